"""Text datasets: a regex word tokenizer, a training-split vocabulary and CSV builders
(NusaX-Senti) that return :class:`runner.data.base.DataBundle` of token ids."""
