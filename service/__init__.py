"""dstrain.service: training as a service (docs/service.md). Nothing in the pipeline imports it."""
