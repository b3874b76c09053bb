// Package heads turns the outputs of UNITER's task heads into the numbers the
// service returns. It is pure math over the model's outputs and uses only the
// standard library.
//
// Two heads are covered:
//
//   - Image-text matching (ITM). The itm_output layer gives two logits per
//     pair; [MatchFromLogits] turns them into P(match) = softmax(logits)[1]
//     (a calibrated yes/no probability) and keeps the raw match logit
//     logits[1], which is what zero-shot retrieval ranks by.
//
//   - Word-region alignment (WRA) by optimal transport. [Align] runs the
//     inexact proximal point method (IPOT) that UNITER uses in pre-training
//     on the final-layer hidden states of the text tokens and of the image
//     regions of one pair. The transport plan is the word-region alignment
//     map and the OT distance is a second matching signal (lower means better
//     aligned). [WordRegions] folds the token rows of a plan into words and
//     lists each word's best regions.
//
// A third part analyses attention: [ClassifyAttention] labels one head's self-attention map of
// a pair with one of the paper's six patterns (Vertical, Diagonal, Vertical + Diagonal, Block,
// Heterogeneous, Reversed Block) from measured properties, with every threshold in
// [PatternThresholds]; attention.go documents the measures and the decision.
//
// Conventions: plans and costs are tokens × regions (row i is text token i,
// including [CLS] and [SEP]; column j is region j) and are computed in
// float64. The reference implementation is models/uniter/ot.py; the golden
// file testdata/ipot_golden.json is generated from it by
// python3 -m uniter.fixtures.ot_golden (make fixture).
package heads
