#!/usr/bin/env python3
"""Writes probe.onnx: a one-node Relu graph that the runtime builds a session on to check that an
execution provider really starts. Run with Debian's python3-onnx: /usr/bin/python3 make_probe.py"""
from onnx import TensorProto, helper

g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="uniter-probe")
m.ir_version = 8
with open("probe.onnx", "wb") as f:
    f.write(m.SerializeToString())
