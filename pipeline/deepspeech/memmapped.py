"""Convert a frozen TensorFlow GraphDef (.pb) into TensorFlow's memmapped format (.pbmm).

A frozen graph keeps every weight inside one GraphDef protobuf, so loading it
means reading the whole file, parsing it and copying each tensor onto the heap.
The memmapped format avoids that: large constants are moved out of the graph
into raw, aligned regions of the file, and their Const nodes become
ImmutableConst nodes that name their region. The runtime maps the file into
memory (TensorFlow's MemmappedEnv) and ImmutableConst hands the mapped bytes
straight to the ops, so the model loads faster, its weights are never copied
onto the heap, and processes serving the same model share one copy of them in
the page cache.

File layout, as written by TF 1.15's tensorflow/core/util/memmapped_file_system_writer.cc:
  [zero padding to 64 bytes][tensor bytes]   one region per converted Const
  [serialized GraphDef]                      the region "memmapped_package://."
  [serialized MemmappedFileSystemDirectory]  offset, name and length of each region
  [uint64, little-endian]                    file offset of that directory

This does what tensorflow/contrib/util/convert_graphdef_memmapped_format does
(same rules, same region names), for machines without that prebuilt binary.
"""
import argparse
import os
import re
import struct
import sys
import warnings

import numpy as np
from google.protobuf.message import DecodeError
from tensorflow.core.framework import graph_pb2, types_pb2
from tensorflow.core.framework.attr_value_pb2 import AttrValue
from tensorflow.core.util import memmapped_file_system_pb2

PREFIX = "memmapped_package://"
GRAPH_REGION = PREFIX + "."
ALIGNMENT = 64  # Allocator::kAllocatorAlignment: a mapped tensor must be as aligned as a heap one
DEFAULT_MIN_BYTES = 10000  # the C++ tool's default --min_conversion_tensor_size

# The types the C++ tool converts (TF_CALL_POD_TYPES): the little-endian layout of
# each in memory, and the TensorProto field holding its values when there is no
# tensor_content. half and bfloat16 values are 16-bit patterns kept in half_val.
POD_TYPES = {
    types_pb2.DT_FLOAT: ("<f4", "float_val"), types_pb2.DT_DOUBLE: ("<f8", "double_val"),
    types_pb2.DT_INT32: ("<i4", "int_val"), types_pb2.DT_INT64: ("<i8", "int64_val"),
    types_pb2.DT_INT16: ("<i2", "int_val"), types_pb2.DT_UINT16: ("<u2", "int_val"),
    types_pb2.DT_INT8: ("i1", "int_val"), types_pb2.DT_UINT8: ("u1", "int_val"),
    types_pb2.DT_BOOL: ("?", "bool_val"),
    types_pb2.DT_HALF: ("<u2", "half_val"), types_pb2.DT_BFLOAT16: ("<u2", "half_val"),
    types_pb2.DT_COMPLEX64: ("<c8", "scomplex_val"), types_pb2.DT_COMPLEX128: ("<c16", "dcomplex_val"),
}


def tensor_bytes(node):
    """The Const's tensor laid out as Tensor::FromProto lays it out in memory."""
    proto = node.attr["value"].tensor
    layout, field = POD_TYPES[proto.dtype]
    dtype = np.dtype(layout)
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise ValueError(f"Const {node.name!r} has an invalid shape {dims}")
    count = int(np.prod(dims, dtype=np.int64))
    if count == 0:
        return b""
    if proto.tensor_content:
        if len(proto.tensor_content) != count * dtype.itemsize:
            needed = count * dtype.itemsize
            raise ValueError(f"Const {node.name!r}: tensor_content has {len(proto.tensor_content)} bytes, "
                             f"its shape needs {needed}")
        return proto.tensor_content
    values = getattr(proto, field)
    if dtype.kind == "c":  # stored as flat (real, imag) pairs; an unpaired last number is ignored
        part = np.dtype(f"<f{dtype.itemsize // 2}")
        values = np.array(values[:len(values) // 2 * 2], dtype=part).view(dtype)
    else:  # narrower integers are truncated from the int32 field, as static_cast does
        values = np.array(list(values)).astype(dtype)
    # Fewer values than elements means "repeat the last one" (zeros if there are none):
    # TF stores a constant filled with one value that way.
    data = np.zeros(count, dtype=dtype)
    kept = min(len(values), count)
    data[:kept] = values[:kept]
    if 0 < kept < count:
        data[kept:] = values[kept - 1]
    return data.tobytes()


def region_name(node_name, used):
    """The C++ tool's region name: bytes outside [A-Za-z0-9_.] become '_', then '_' until unique."""
    name = re.sub(rb"[^A-Za-z0-9_.]", b"_", node_name.encode("utf-8")).decode("ascii")
    while name in used:
        name += "_"
    used.add(name)
    return PREFIX + name


def convert(in_path, out_path, min_bytes=DEFAULT_MIN_BYTES):
    """Write IN's graph to OUT in memmapped format; return how many Consts were moved out."""
    graph = graph_pb2.GraphDef()
    try:
        with open(in_path, "rb") as f, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            graph.ParseFromString(f.read())
    except (OSError, DecodeError) as e:
        raise ValueError(f"cannot read a GraphDef from {in_path}: {e}") from None
    if caught:  # the C++ protobuf backend only warns where it stops at junk; the C++ tool fails
        raise ValueError(f"{in_path} is not a GraphDef: {caught[0].message}")
    if not graph.node:
        raise ValueError(f"{in_path} is not a frozen GraphDef: it has no nodes")

    directory = memmapped_file_system_pb2.MemmappedFileSystemDirectory()
    used_names = {"."}  # a node named "." would clash with the graph's region; C++ lets it
    converted = 0
    # Written beside OUT so that the final rename is atomic: OUT is never half-written.
    tmp_path = f"{out_path}.tmp{os.getpid()}"
    try:
        with open(tmp_path, "wb") as out:
            for node in graph.node:
                if node.op != "Const" or node.attr["value"].tensor.dtype not in POD_TYPES:
                    continue  # strings and other non-POD tensors cannot be used in place
                data = tensor_bytes(node)
                if len(data) < min_bytes:
                    continue
                out.write(b"\0" * (-out.tell() % ALIGNMENT))
                name = region_name(node.name, used_names)
                directory.element.add(offset=out.tell(), name=name, length=len(data))
                out.write(data)
                tensor = node.attr["value"].tensor
                attrs = {"dtype": AttrValue(type=tensor.dtype), "shape": AttrValue(shape=tensor.tensor_shape),
                         "memory_region_name": AttrValue(s=name.encode("ascii"))}
                # ImmutableConst takes only these three attrs: any other fails graph validation.
                node.op = "ImmutableConst"
                node.ClearField("attr")
                for key, value in attrs.items():
                    node.attr[key].CopyFrom(value)
                converted += 1
            # The graph region is not aligned (the C++ writer aligns tensors only).
            # deterministic=True sorts the attr maps, so the same input gives the same bytes.
            graph_bytes = graph.SerializeToString(deterministic=True)
            directory.element.add(offset=out.tell(), name=GRAPH_REGION, length=len(graph_bytes))
            out.write(graph_bytes)
            directory_offset = out.tell()
            out.write(directory.SerializeToString())
            out.write(struct.pack("<Q", directory_offset))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_path, out_path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return converted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="frozen GraphDef, e.g. output_graph.pb")
    parser.add_argument("output", help="memmapped graph to write, e.g. output_graph.pbmm")
    parser.add_argument("--min-conversion-size", type=int, default=DEFAULT_MIN_BYTES, metavar="BYTES",
                        help="keep tensors of fewer bytes inside the graph (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.min_conversion_size <= 0:  # as in the C++ tool: a region may not be empty
        parser.error("--min-conversion-size must be > 0")
    try:
        count = convert(args.input, args.output, args.min_conversion_size)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"Converted {count} nodes into {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
