"""Getting sources into ``sources/``, datasets and language-model texts alike: downloads, verification, archives."""
