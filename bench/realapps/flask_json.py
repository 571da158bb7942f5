"""The Flask row: one endpoint that serialises 300 records (a dict of six fields each, a
list of tags among them) to JSON with Flask's jsonify."""

from flask import Flask, jsonify

app = Flask(__name__)

RECORDS = [
    {
        "id": n,
        "name": f"customer {n}",
        "email": f"customer{n}@example.com",
        "score": round(n * 1.37 % 100, 2),
        "active": n % 3 != 0,
        "tags": [f"tag{n % 7}", f"tag{n % 11}"],
    }
    for n in range(300)
]


@app.route("/records")
def records():
    return jsonify(records=RECORDS)
