#!/usr/bin/env python3
"""A detector graph that proposes nothing, for TestDetectNoProposals (detect_test.go).

Run from the repository root with Debian's interpreter (python3-onnx):
    /usr/bin/python3 pipeline/testdata/make_empty_detector.py pipeline/testdata/empty_detector.onnx

It has the detector contract's input and outputs with testdata/bundles/tiny-random's sizes
(C = 11 classes, D = 64, A = 9 attributes) and answers every image with P = 0 proposals: what
bottom-up-attention's graph gives when every RPN proposal is empty after clipping (the port
filters them; docs/detector-contract.md, "Graph semantics"). Each output is a [0, k] tensor
times the image's maximum, so the graph reads its input.
"""
import sys

import onnx
from onnx import TensorProto, helper

OUTPUTS = [("boxes", 4), ("class_probs", 11), ("features", 64), ("attr_probs", 9)]


def main(path):
    nodes = [helper.make_node("ReduceMax", ["image"], ["peak"], keepdims=0)]
    inits = []
    for name, k in OUTPUTS:
        inits.append(helper.make_tensor(f"{name}_shape", TensorProto.INT64, [2], [0, k]))
        nodes.append(helper.make_node("ConstantOfShape", [f"{name}_shape"], [f"{name}_empty"],
                                      value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])))
        nodes.append(helper.make_node("Mul", [f"{name}_empty", "peak"], [name]))
    graph = helper.make_graph(
        nodes, "empty_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["proposals", k]) for name, k in OUTPUTS],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="make_empty_detector.py")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, path)


if __name__ == "__main__":
    main(sys.argv[1])
