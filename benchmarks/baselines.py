"""Baseline runners for `benchmarks/run.py`: what the sync engine is measured against.

    .venv-bench/bin/python benchmarks/baselines.py COMMAND 'JSON ARGS'

Each command runs in its own process (started by `run.py`, which measures the
process's wall time and peak RSS with `os.wait4`) and prints one JSON object on
its last stdout line. The comparison tools (dlt, reladiff, datacompy) live only
in `.venv-bench`, never in the project's `.venv`.

Commands:

- `floor`: each source view streamed with a server-side cursor (PyMySQL `SSCursor`)
  into PostgreSQL `COPY`, no transforms;
- `naive`: `pandas.read_sql(chunksize=50000)` + `DataFrame.to_sql(method="multi")` on
  the first `limit` rows of each view;
- `dlt`: dlt `sql_table(backend="pyarrow")`, `write_disposition="merge"` on the
  primary key, into PostgreSQL;
- `recon_prepare`: the data set of `reconcile_bench.build` written as two raw tables
  (ERP side on MariaDB, OA side on PostgreSQL);
- `compare`: `etl.reconcile.compare.compare_entity` on the same rows, mapped, in memory;
- `reladiff`: reladiff's cross-database diff of the two raw tables;
- `datacompy`: both raw tables read into pandas, then `datacompy.PandasCompare`.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

# compared fields of the purchase mapping (compare: true), as the raw reconciliation tables hold them
RECON_FIELDS = [
    "request_no",
    "line_no",
    "item_code",
    "supplier_code",
    "quantity",
    "unit_price",
    "amount",
    "need_date",
    "department_code",
    "requester_code",
]


# --------------------------------------------------------------------------- memory helpers


def _status_kb(field: str) -> int:
    """A `/proc/self/status` figure in kB (VmRSS, VmHWM); 0 where /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux `clear_refs` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """Peak RSS of this process so far (or since the last `reset_peak`)."""
    kb = _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024, 1)


def rss_mb() -> float:
    return round(_status_kb("VmRSS") / 1024, 1)


# --------------------------------------------------------------------------- connections


def _mysql(url: str, *, stream: bool = False) -> Any:
    """A DB-API connection through the URL's driver (mysqlclient or PyMySQL), as the engine reads."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    options = {"host": u.host or "127.0.0.1", "port": u.port or 3306, "user": u.username or "root",
               "password": u.password or "", "database": u.database, "charset": "utf8mb4"}
    if u.get_driver_name() == "mysqldb":
        import MySQLdb
        import MySQLdb.cursors

        return MySQLdb.connect(**options, cursorclass=MySQLdb.cursors.SSCursor if stream else MySQLdb.cursors.Cursor)
    import pymysql

    return pymysql.connect(**options, cursorclass=pymysql.cursors.SSCursor if stream else pymysql.cursors.Cursor)


def _pg(url: str) -> Any:
    import psycopg

    return psycopg.connect(_pg_dsn(url))


def _pg_dsn(url: str) -> str:
    """libpq conninfo of a SQLAlchemy PostgreSQL URL (keeps `options`, e.g. a search_path)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    parts = [f"host={u.host or '127.0.0.1'}", f"port={u.port or 5432}", f"dbname={u.database}"]
    if u.username:
        parts.append(f"user={u.username}")
    if u.password:
        parts.append(f"password={u.password}")
    options = u.query.get("options")
    if options:
        options = " ".join(options) if isinstance(options, tuple) else options
        parts.append("options='" + options.replace("'", "\\'") + "'")
    return " ".join(parts)


def _create_like(src_url: str, view: str, dst_url: str, table: str) -> list[str]:
    """Create `table` in PostgreSQL with the columns of the MariaDB `view` (generic types); returns column names."""
    import sqlalchemy as sa

    src = sa.create_engine(src_url)
    dst = sa.create_engine(dst_url)
    try:
        reflected = sa.Table(view, sa.MetaData(), autoload_with=src)
        md = sa.MetaData()
        cols = [sa.Column(c.name, c.type.as_generic()) for c in reflected.columns]
        out = sa.Table(table, md, *cols)
        md.drop_all(dst, tables=[out])
        md.create_all(dst, tables=[out])
        return [c.name for c in reflected.columns]
    finally:
        src.dispose()
        dst.dispose()


# --------------------------------------------------------------------------- sync baselines


def floor(args: dict[str, Any]) -> dict[str, Any]:
    """Server-side cursor from MariaDB straight into PostgreSQL COPY: the fastest a Python mover can go here."""
    rows = 0
    started = time.perf_counter()
    for src in args["sources"]:
        table = f"{args['prefix']}_{src['name']}"
        columns = _create_like(src["url"], src["view"], args["dst"], table)
        quoted = ", ".join(f'"{c}"' for c in columns)
        with _mysql(src["url"], stream=True) as my, _pg(args["dst"]) as pg:
            cur = my.cursor()
            cur.execute(f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM `{src['view']}`")
            with pg.cursor() as pcur, pcur.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
                while True:
                    batch = cur.fetchmany(10_000)
                    if not batch:
                        break
                    for row in batch:
                        copy.write_row(row)
                    rows += len(batch)
            cur.close()
            pg.commit()
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds), "peak_mb": peak_mb()}


def naive(args: dict[str, Any]) -> dict[str, Any]:
    """What a first pandas script does: read_sql in chunks, to_sql(method="multi")."""
    import pandas as pd
    import sqlalchemy as sa

    dst = sa.create_engine(args["dst_naive"])
    rows = 0
    started = time.perf_counter()
    for src in args["sources"]:
        engine = sa.create_engine(src["url"])
        table = f"{args['prefix']}_{src['name']}"
        with dst.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        query = f"SELECT * FROM `{src['view']}` LIMIT {int(src['limit'])}"
        for chunk in pd.read_sql(sa.text(query), engine, chunksize=50_000):
            chunk.to_sql(table, dst, if_exists="append", index=False, method="multi")
            rows += len(chunk)
        engine.dispose()
    seconds = time.perf_counter() - started
    dst.dispose()
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds), "peak_mb": peak_mb()}


def dlt_merge(args: dict[str, Any]) -> dict[str, Any]:
    """dlt's SQL source with the pyarrow backend, merged on the primary key into PostgreSQL; no transforms."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.sql_database import sql_table

    resources = [
        sql_table(
            credentials=src["url"],
            table=src["view"],
            backend="pyarrow",
            chunk_size=50_000,
            write_disposition="merge",
            primary_key=src["pk"],
        ).with_name(f"purchase_{src['name']}")
        for src in args["sources"]
    ]
    pipeline = dlt.pipeline(
        pipeline_name="erpoa_bench",
        pipelines_dir=args["workdir"],
        destination=dlt.destinations.postgres(credentials=args["dst_dlt"]),
        dataset_name=args["dataset"],
    )
    started = time.perf_counter()
    pipeline.run(resources)
    seconds = time.perf_counter() - started
    counts = pipeline.last_trace.last_normalize_info.row_counts if pipeline.last_trace else {}
    rows = sum(v for k, v in counts.items() if k.startswith("purchase_"))
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds) if rows else None,
        "peak_mb": peak_mb(),
        "children_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "dlt": dlt.__version__,
        "row_counts": counts,
    }


# --------------------------------------------------------------------------- reconciliation


def _recon_frames(rows: int) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """`reconcile_bench.build` (the purchase mapping limited to the fields its generator fills)."""
    import reconcile_bench

    return reconcile_bench.build(rows)


def _int_key(frame: Any) -> Any:
    """An integer key for the raw tables (reladiff wants one): request number * 10 + line; duplicates +5."""
    import numpy as np

    number = frame["request_no"].str.slice(2).astype("int64").to_numpy()
    key = number * 10 + frame["line_no"].astype("int64").to_numpy()
    dup = frame["_src_id"].astype(str).str.startswith("dup").to_numpy()
    return np.where(dup, key + 5, key)


def recon_prepare(args: dict[str, Any]) -> dict[str, Any]:
    """Write the ERP side to MariaDB and the OA side to PostgreSQL as raw tables (key `id` + compared fields)."""
    import numpy as np
    import sqlalchemy as sa

    from etl.demo.generate import _copy_postgres, _insert_mysql

    started = time.perf_counter()
    _, frames, _ = _recon_frames(int(args["rows"]))
    out: dict[str, int] = {}
    for side, url, table in (("erp", args["erp_url"], args["table"]), ("oa", args["oa_url"], args["table"])):
        frame = frames[side]
        md = sa.MetaData()
        t = sa.Table(
            table,
            md,
            sa.Column("id", sa.BigInteger, nullable=False),
            sa.Column("request_no", sa.String(30)),
            sa.Column("line_no", sa.BigInteger),
            sa.Column("item_code", sa.String(40)),
            sa.Column("supplier_code", sa.String(40)),
            sa.Column("quantity", sa.Numeric(20, 4)),
            sa.Column("unit_price", sa.Numeric(20, 2)),
            sa.Column("amount", sa.Numeric(20, 2)),
            sa.Column("need_date", sa.Date),
            sa.Column("department_code", sa.String(20)),
            sa.Column("requester_code", sa.String(20)),
            sa.Index(f"ix_{table}_id", "id"),
        )
        columns = {
            "id": _int_key(frame),
            "request_no": frame["request_no"].to_numpy(dtype=object),
            "line_no": frame["line_no"].astype("int64").to_numpy(),
            "item_code": frame["item_code"].to_numpy(dtype=object, na_value=None),
            "supplier_code": frame["supplier_code"].to_numpy(dtype=object, na_value=None),
            "quantity": frame["quantity"].to_numpy(dtype="float64"),
            "unit_price": frame["unit_price"].to_numpy(dtype="float64"),
            "amount": frame["amount"].to_numpy(dtype="float64"),
            "need_date": frame["need_date"].to_numpy().astype("datetime64[D]"),
            "department_code": frame["department_code"].to_numpy(dtype=object, na_value=None),
            "requester_code": frame["requester_code"].to_numpy(dtype=object, na_value=None),
        }
        engine = sa.create_engine(url)
        md.drop_all(engine)
        md.create_all(engine)
        if engine.dialect.name == "postgresql":
            _copy_postgres(engine, t, columns)
        else:
            _insert_mysql(engine, t, columns)
        engine.dispose()
        out[side] = len(frame)
        del columns
        gc.collect()
    assert np  # numpy is used through the frames
    return {"rows": out, "seconds": round(time.perf_counter() - started, 3)}


def compare(args: dict[str, Any]) -> dict[str, Any]:
    """compare_entity on the mapped rows, in memory (the inputs are built first and not timed)."""
    import reconcile_bench

    mapping, frames, extra = _recon_frames(int(args["rows"]))
    gc.collect()
    inputs_mb = rss_mb()
    times = []
    diffs = None
    compare_peak = None
    for i in range(int(args.get("repeat", 2))):
        can_reset = reset_peak()
        t = time.perf_counter()
        diffs = reconcile_bench.run(mapping, frames, extra)
        times.append(round(time.perf_counter() - t, 3))
        if i == 0 and can_reset:
            compare_peak = peak_mb()
        gc.collect()
    assert diffs is not None
    return {
        "rows_per_side": int(args["rows"]),
        "seconds": min(times),
        "seconds_all": times,
        "differences": len(diffs),
        "by_class": {k: int(v) for k, v in diffs["class"].value_counts().items()},
        "inputs_rss_mb": inputs_mb,
        "compare_peak_rss_mb": compare_peak,
        "compare_extra_mb": round(compare_peak - inputs_mb, 1) if compare_peak else None,
        "peak_mb": peak_mb(),
    }


def _reladiff_uri(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    scheme = "postgresql" if u.get_backend_name() == "postgresql" else "mysql"
    auth = u.username or ""
    if u.password:
        auth += f":{u.password}"
    port = u.port or (5432 if scheme == "postgresql" else 3306)
    return f"{scheme}://{auth}@{u.host or '127.0.0.1'}:{port}/{u.database}"


def reladiff_diff(args: dict[str, Any]) -> dict[str, Any]:
    """reladiff (hash-diff, cross-database) of the two raw tables on `id`, comparing every field."""
    import reladiff

    columns = tuple(c for c in RECON_FIELDS)
    a = reladiff.connect_to_table(
        _reladiff_uri(args["erp_url"]), args["erp_table"], "id", thread_count=args.get("threads", 2),
        extra_columns=columns,
    )
    b = reladiff.connect_to_table(
        _reladiff_uri(args["oa_url"]), tuple(args["oa_table"]), "id", thread_count=args.get("threads", 2),
        extra_columns=columns,
    )
    started = time.perf_counter()
    diff = list(reladiff.diff_tables(a, b, threaded=True))
    seconds = time.perf_counter() - started
    keys = {row[1][0] for row in diff}
    return {
        "seconds": round(seconds, 3),
        "diff_rows": len(diff),
        "keys_differing": len(keys),
        "columns": len(columns),
        "peak_mb": peak_mb(),
        "reladiff": getattr(reladiff, "__version__", "0.6"),
    }


def datacompy_compare(args: dict[str, Any]) -> dict[str, Any]:
    """Both raw tables read into pandas, then compared with datacompy.PandasCompare on `id`."""
    import datacompy
    import pandas as pd
    import sqlalchemy as sa

    started = time.perf_counter()
    frames = []
    for url, table in ((args["erp_url"], args["erp_table"]), (args["oa_url"], args["oa_table_name"])):
        engine = sa.create_engine(url)
        frames.append(pd.read_sql(sa.text(f"SELECT * FROM {table}"), engine))
        engine.dispose()
    read_seconds = time.perf_counter() - started
    t = time.perf_counter()
    cmp = datacompy.PandasCompare(frames[0], frames[1], join_columns=["id"], abs_tol=0.0001, df1_name="erp",
                                  df2_name="oa")
    report = cmp.report()
    compare_seconds = time.perf_counter() - t
    return {
        "seconds": round(read_seconds + compare_seconds, 3),
        "read_seconds": round(read_seconds, 3),
        "compare_seconds": round(compare_seconds, 3),
        "matches": bool(cmp.matches()),
        "report_chars": len(report),
        "rows": [len(f) for f in frames],
        "peak_mb": peak_mb(),
        "datacompy": datacompy.__version__,
    }


COMMANDS = {
    "floor": floor,
    "naive": naive,
    "dlt": dlt_merge,
    "recon_prepare": recon_prepare,
    "compare": compare,
    "reladiff": reladiff_diff,
    "datacompy": datacompy_compare,
}


def main() -> None:
    command, raw = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "{}")
    result = COMMANDS[command](json.loads(raw))
    sys.stdout.flush()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
