"""Chaos: meetings sent while workers are SIGKILLed and restarted; the results must still be exact."""
