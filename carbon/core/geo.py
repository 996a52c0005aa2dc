"""Great-circle distance (haversine on the mean Earth radius), in Python and as a SQL expression
that orders rows by it; both evaluate the same formula (tests/scenes/test_search.py holds them equal)."""
from __future__ import annotations

import math

from sqlalchemy import Float, case, cast, func, literal

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius
_RADIANS = math.pi / 180


def great_circle_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Metres between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(a, 1.0)))


def great_circle_m_sql(lat_column, lon_column, lat: float, lon: float):
    """The same distance from columns (degrees) to a point, as a SQL expression (PostgreSQL, SQLite
    with its math functions: ``sqlite_math`` adds them where the build lacks them)."""
    phi2 = cast(lat_column, Float) * _RADIANS
    half_dphi = (phi2 - math.radians(lat)) / 2
    half_dlmb = (cast(lon_column, Float) * _RADIANS - math.radians(lon)) / 2
    a = (func.sin(half_dphi) * func.sin(half_dphi)
         + literal(math.cos(math.radians(lat))) * func.cos(phi2) * func.sin(half_dlmb) * func.sin(half_dlmb))
    return 2 * EARTH_RADIUS_M * func.asin(func.sqrt(case((a > 1.0, 1.0), else_=a)))


def sqlite_math(dbapi_connection) -> None:
    """Give a SQLite connection sin, cos, asin and sqrt when its build has no math functions."""
    try:
        dbapi_connection.execute("SELECT sin(0), cos(0), asin(0), sqrt(0)").fetchone()
    except Exception:  # noqa: BLE001 - sqlite3.OperationalError: no such function
        for name, function in (("sin", math.sin), ("cos", math.cos), ("asin", math.asin), ("sqrt", math.sqrt)):
            dbapi_connection.create_function(name, 1, function, deterministic=True)
