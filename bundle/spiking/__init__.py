"""Spiking side: neurons, ANN->SNN conversion, the spiking segmenter, activity and energy."""
