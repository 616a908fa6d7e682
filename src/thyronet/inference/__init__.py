"""Using a trained model: checkpoints, the fold ensemble and ONNX behind one predictor; calibration,
the out-of-distribution gate, the segmenter and the region the classifier looks at; Grad-CAM."""
