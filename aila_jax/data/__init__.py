from aila_jax.data import text  # noqa: F401  (registers the text datasets multi30k_en_de, imdb)
from aila_jax.data import mnist_variants  # noqa: F401  (registers translated/cluttered MNIST)
from aila_jax.data import synthetic  # noqa: F401  (registers the synthetic seq2seq datasets copy, reverse)
from aila_jax.data import prices  # noqa: F401  (registers the daily price forecasting dataset prices)
