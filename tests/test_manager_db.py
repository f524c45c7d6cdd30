#!/usr/bin/python3
"""The manager's database layer against a real MariaDB server: the same selftest that
unit.db runs on SQLite (migrations, prepared statements with hostile values, duplicates,
transactions, NULLs, long values), run again with ZF_TEST_DB_URL naming a fresh MariaDB
database; and a database that does not exist is a clear error."""
import os
import subprocess
import unittest

import mariadb
from zflytest import BUILD_DIR

SELFTEST = os.path.join(BUILD_DIR, "tests", "zf_selftest")


@unittest.skipIf(mariadb.available(), mariadb.available())
class ManagerDbTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = mariadb.MariaDB()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_selftest_on_mariadb(self):
        url = self.server.new_database()
        result = subprocess.run([SELFTEST, "db", "-v"], env={**os.environ, "ZF_TEST_DB_URL": url},
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("(mariadb)", result.stdout)
        self.assertIn("selftest db: OK", result.stdout)

    def test_wrong_database_is_a_clear_error(self):
        url = f"mariadb://{mariadb.USER}@localhost/no_such_db?socket={self.server.socket}"
        result = subprocess.run([SELFTEST, "db"], env={**os.environ, "ZF_TEST_DB_URL": url},
                                capture_output=True, text=True, timeout=60)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("cannot connect", result.stderr)
        self.assertIn("no_such_db", result.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
