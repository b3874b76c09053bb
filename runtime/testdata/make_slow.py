#!/usr/bin/env python3
"""Writes slow.onnx: 400 chained Tanh(MatMul(y, x)) steps over a dynamic [n, n] input, so a
test can cancel a run that is really in progress (ONNX Runtime checks termination between
nodes). No weights: the file stays tiny. /usr/bin/python3 make_slow.py"""
from onnx import TensorProto, helper

nodes, prev = [], "x"
for i in range(400):
    nodes.append(helper.make_node("MatMul", [prev, "x"], [f"m{i}"]))
    nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i}"]))
    prev = f"t{i}"
nodes.append(helper.make_node("Identity", [prev], ["y"]))
g = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "n"])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "n"])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="uniter-test")
m.ir_version = 8
with open("slow.onnx", "wb") as f:
    f.write(m.SerializeToString())
