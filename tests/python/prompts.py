"""Prompts shared by the API tests: short, varied, and each continued
differently by the model, so a mix-up between concurrent streams shows."""

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The three primary colors are",
    "Water boils at",
    "import numpy as np\n",
    "My favourite season is autumn because",
    "The quick brown fox",
]
