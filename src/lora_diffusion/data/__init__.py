"""Data: corpora for pretraining and (later) task datasets."""
