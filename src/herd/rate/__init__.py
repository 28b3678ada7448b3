"""Rating answers A–D: by people in a web app (`herd rate-app`) and by an LLM judge, plus agreement and figures.

Modules: `store` (the study database), `app` (the rating web app), `agreement` (kappa and alpha), `figures` (the
paper's stacked A–D bars). Nothing here imports torch; matplotlib and FastAPI are imported where they are used.
"""

RATINGS = ("A", "B", "C", "D")
