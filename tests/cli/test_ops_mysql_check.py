"""`imgburst mysql-check`: the original sample's round trip against a real MariaDB with a
dedicated user and database (as a binding gives), never printing the password."""

from __future__ import annotations

import subprocess
import sys

import pymysql


def mysql_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgburst.cli", "mysql-check"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_round_trip_prints_rows_and_never_the_password(base_env, mysql_env):
    env = base_env | mysql_env
    result = mysql_check(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"user: {mysql_env['MYSQL_USER']}",
        f"host: {mysql_env['MYSQL_HOST']}:{mysql_env['MYSQL_PORT']}",
        f"database: {mysql_env['MYSQL_DATABASE']}", "tls: off",
        "1 hoge", "2 foo", "3 bar", "committed"]
    assert mysql_env["MYSQL_PASSWORD"] not in result.stdout + result.stderr
    db = pymysql.connect(host=mysql_env["MYSQL_HOST"], port=int(mysql_env["MYSQL_PORT"]),
                         user=mysql_env["MYSQL_USER"], password=mysql_env["MYSQL_PASSWORD"],
                         database=mysql_env["MYSQL_DATABASE"])
    with db.cursor() as cur:  # committed: another connection sees the rows
        cur.execute("SELECT id, name FROM test ORDER BY id")
        assert cur.fetchall() == ((1, "hoge"), (2, "foo"), (3, "bar"))
    db.close()


def test_unreachable_database_names_host_and_port(base_env, mysql_env):
    env = base_env | mysql_env | {"MYSQL_PORT": "1"}
    result = mysql_check(env)
    assert result.returncode == 1
    assert f"cannot use MySQL at {mysql_env['MYSQL_HOST']}:1" in result.stderr
    assert mysql_env["MYSQL_PASSWORD"] not in result.stdout + result.stderr
    wrong = mysql_check(base_env | mysql_env | {"MYSQL_PASSWORD": "not-it-" + "x" * 8})
    assert wrong.returncode == 1 and "Access denied" in wrong.stderr
    assert "not-it-" not in wrong.stdout + wrong.stderr


def test_without_a_binding_it_says_what_to_set(base_env):
    result = mysql_check(base_env)
    assert result.returncode == 2 and "MYSQL_HOST is not set" in result.stderr
