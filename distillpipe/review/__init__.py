"""Human review of a run: a seeded sample, a local page, and the decisions file.

    sample.py       the stratified sample a reviewer sees (kept, rejected per filter,
                    borderline scores near a threshold)
    decisions.py    RUN_DIR/review.jsonl: append-only, locked, fsynced; last decision wins
    server.py       the page's server: 127.0.0.1 only, a token, the Origin, a strict CSP
    static/         the page (HTML, CSS, JS: every record field rendered as text)
    labelstudio.py  the sample as Label Studio tasks, and its annotations back
    agreement.py    each automatic filter against the reviewer (the report's review section)

The ``review`` filter (filters/review.py) applies the decisions on the next run.
"""
