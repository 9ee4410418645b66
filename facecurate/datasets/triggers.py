"""SQL of the triggers that maintain ``DatasetCounts`` (PostgreSQL and SQLite), used by migration 0007.

PostgreSQL: statement-level triggers with transition tables, so a bulk insert of a million faces updates
each dataset's row once per statement, not once per face. SQLite: row-level triggers (it has no others).
Image statuses outside the four known ones are not counted.
"""
from __future__ import annotations

COUNTS = "datasets_datasetcounts"
DATASET, IDENTITY, IMAGE, FACE = "datasets_dataset", "datasets_identity", "datasets_image", "datasets_face_detection"
STATUSES = ("pending", "ok", "no_face", "error")
BACKFILL = f"""
INSERT INTO {COUNTS} (dataset_id, images_pending, images_ok, images_no_face, images_error, faces, identities)
SELECT d.id,
  (SELECT COUNT(*) FROM {IMAGE} i WHERE i.dataset_id = d.id AND i.status = 'pending'),
  (SELECT COUNT(*) FROM {IMAGE} i WHERE i.dataset_id = d.id AND i.status = 'ok'),
  (SELECT COUNT(*) FROM {IMAGE} i WHERE i.dataset_id = d.id AND i.status = 'no_face'),
  (SELECT COUNT(*) FROM {IMAGE} i WHERE i.dataset_id = d.id AND i.status = 'error'),
  (SELECT COUNT(*) FROM {FACE} f WHERE f.dataset_id = d.id),
  (SELECT COUNT(*) FROM {IDENTITY} t WHERE t.dataset_id = d.id)
FROM {DATASET} d
"""


def _pg_delta_update(delta_sql: str) -> str:
    """UPDATE the counts from a query giving (dataset_id, sign, status-or-NULL, kind) rows."""
    sets = ", ".join(f"images_{s} = c.images_{s} + d.{s}" for s in STATUSES)
    sums = ", ".join(f"COALESCE(SUM(CASE WHEN kind = 'image' AND status = '{s}' THEN sign END), 0) AS {s}"
                     for s in STATUSES)
    return (f"UPDATE {COUNTS} c SET {sets}, faces = c.faces + d.faces, identities = c.identities + d.identities "
            f"FROM (SELECT dataset_id, {sums}, "
            f"COALESCE(SUM(CASE WHEN kind = 'face' THEN sign END), 0) AS faces, "
            f"COALESCE(SUM(CASE WHEN kind = 'identity' THEN sign END), 0) AS identities "
            f"FROM ({delta_sql}) x GROUP BY dataset_id) d WHERE c.dataset_id = d.dataset_id;")


def _pg_function(name: str, delta_sql: str) -> str:
    return (f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"{_pg_delta_update(delta_sql)} RETURN NULL; END $$;")


def postgresql() -> tuple[list[str], list[str]]:
    forward, backward = [], []
    forward.append(f"CREATE OR REPLACE FUNCTION fc_counts_dataset_ins() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   f"INSERT INTO {COUNTS} (dataset_id, images_pending, images_ok, images_no_face, images_error, "
                   f"faces, identities) VALUES (NEW.id, 0, 0, 0, 0, 0, 0) ON CONFLICT DO NOTHING; RETURN NULL; END $$;")
    forward.append(f"CREATE TRIGGER fc_counts_dataset_ins AFTER INSERT ON {DATASET} FOR EACH ROW "
                   f"EXECUTE FUNCTION fc_counts_dataset_ins();")
    backward += [f"DROP TRIGGER IF EXISTS fc_counts_dataset_ins ON {DATASET};",
                 "DROP FUNCTION IF EXISTS fc_counts_dataset_ins();"]
    tables = {"image": (IMAGE, "status"), "face": (FACE, "NULL"), "identity": (IDENTITY, "NULL")}
    for kind, (table, status) in tables.items():
        events = {"ins": ("INSERT", "NEW TABLE AS new_rows",
                          f"SELECT dataset_id, 1 AS sign, {status} AS status, '{kind}' AS kind FROM new_rows"),
                  "del": ("DELETE", "OLD TABLE AS old_rows",
                          f"SELECT dataset_id, -1 AS sign, {status} AS status, '{kind}' AS kind FROM old_rows")}
        if kind == "image":
            events["upd"] = ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                             "SELECT dataset_id, 1 AS sign, status, 'image' AS kind FROM new_rows UNION ALL "
                             "SELECT dataset_id, -1, status, 'image' FROM old_rows")
        for op, (event, referencing, delta) in events.items():
            name = f"fc_counts_{kind}_{op}"
            forward.append(_pg_function(name, delta))
            forward.append(f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {referencing} "
                           f"FOR EACH STATEMENT EXECUTE FUNCTION {name}();")
            backward += [f"DROP TRIGGER IF EXISTS {name} ON {table};", f"DROP FUNCTION IF EXISTS {name}();"]
    return forward, backward


def _sqlite_image_sets(row: str, sign: str) -> str:
    return ", ".join(f"images_{s} = images_{s} {sign} ({row}.status = '{s}')" for s in STATUSES)


def sqlite() -> tuple[list[str], list[str]]:
    where = "WHERE dataset_id = {row}.dataset_id"
    triggers = {
        "fc_counts_dataset_ins": (f"AFTER INSERT ON {DATASET}",
                                  f"INSERT OR IGNORE INTO {COUNTS} (dataset_id, images_pending, images_ok, "
                                  f"images_no_face, images_error, faces, identities) VALUES (NEW.id, 0, 0, 0, 0, 0, 0)"),
        "fc_counts_image_ins": (f"AFTER INSERT ON {IMAGE}",
                                f"UPDATE {COUNTS} SET {_sqlite_image_sets('NEW', '+')} {where.format(row='NEW')}"),
        "fc_counts_image_del": (f"AFTER DELETE ON {IMAGE}",
                                f"UPDATE {COUNTS} SET {_sqlite_image_sets('OLD', '-')} {where.format(row='OLD')}"),
        "fc_counts_image_upd": (f"AFTER UPDATE OF status, dataset_id ON {IMAGE}",
                                f"UPDATE {COUNTS} SET {_sqlite_image_sets('OLD', '-')} {where.format(row='OLD')}; "
                                f"UPDATE {COUNTS} SET {_sqlite_image_sets('NEW', '+')} {where.format(row='NEW')}"),
        "fc_counts_face_ins": (f"AFTER INSERT ON {FACE}", f"UPDATE {COUNTS} SET faces = faces + 1 {where.format(row='NEW')}"),
        "fc_counts_face_del": (f"AFTER DELETE ON {FACE}", f"UPDATE {COUNTS} SET faces = faces - 1 {where.format(row='OLD')}"),
        "fc_counts_identity_ins": (f"AFTER INSERT ON {IDENTITY}",
                                   f"UPDATE {COUNTS} SET identities = identities + 1 {where.format(row='NEW')}"),
        "fc_counts_identity_del": (f"AFTER DELETE ON {IDENTITY}",
                                   f"UPDATE {COUNTS} SET identities = identities - 1 {where.format(row='OLD')}"),
    }
    forward = [f"CREATE TRIGGER {name} {when} FOR EACH ROW BEGIN {body}; END;" for name, (when, body) in triggers.items()]
    backward = [f"DROP TRIGGER IF EXISTS {name};" for name in triggers]
    return forward, backward


def statements(vendor: str) -> tuple[list[str], list[str]]:
    if vendor == "postgresql":
        return postgresql()
    if vendor == "sqlite":
        return sqlite()
    raise NotImplementedError(f"dataset counts have no triggers for {vendor}")
