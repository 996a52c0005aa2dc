"""The baseline for the notify benchmark: a bare Flask route that inserts one row (gunicorn serves
``bare_insert:app`` from bench/; ``BENCH_DATABASE_URL`` names the database)."""
from __future__ import annotations

import os

from flask import Flask, request
from sqlalchemy import create_engine, text

engine = create_engine(os.environ["BENCH_DATABASE_URL"], pool_size=4)
app = Flask(__name__)


@app.post("/insert")
def insert():
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO bench_rows (body) VALUES (:body)"), {"body": request.get_data()})
    return "", 204


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
