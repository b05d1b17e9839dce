"""Tests of the Python programs around the services: deploy/stack's configuration handling,
bench/run's arguments, and the process helpers both share (scripts/stacklib.py).

    python3 -m unittest discover -s scripts/tests      (scripts/test runs them)
"""
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import stacklib  # noqa: E402

stack = stacklib.load_script("deploy_stack", os.path.join(ROOT, "deploy", "stack"))
bench = stacklib.load_script("bench_run", os.path.join(ROOT, "bench", "run"))


def minimal_config(**sections):
    config = {
        "name": "test", "run_dir": "run/test",
        "front": {"listen": "127.0.0.1:18500"},
        "workers": {"count": 1, "first_port": 18600},
        "hosts": {"count": 1, "first_port": 18700},
        "storage": {"backend": "sqlite", "data_dir": "run/test/data"},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            config[section] = dict(config.get(section, {}), **values)
        else:
            config[section] = values
    return config


class StackConfigurationTests(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.directory.cleanup()

    def load(self, config, sets=()):
        path = os.path.join(self.directory.name, "config.json")
        with open(path, "w") as handle:
            json.dump(config, handle)
        return stack.load_config(path, list(sets))

    def refused(self, config, sets=()):
        with self.assertRaises(stack.ConfigError) as caught:
            self.load(config, sets)
        return str(caught.exception)

    def test_every_shipped_configuration_loads_with_defaults_and_absolute_paths(self):
        # Production names its secrets under /etc; here they are files of the test's own.
        secrets = []
        for key in ("workers.api_keys_file", "host_token_file"):
            path = os.path.join(self.directory.name, key)
            open(path, "w").close()
            secrets.append("%s=%s" % (key, path))
        for name in ("local", "staging", "production"):
            config = stack.load_config(os.path.join(ROOT, "deploy", name + ".json"), secrets if name == "production" else [])
            self.assertEqual(config["name"], name)
            self.assertTrue(os.path.isabs(config["run_dir"]), config["run_dir"])
            self.assertTrue(os.path.isabs(config["storage"]["data_dir"]))
            self.assertIn("rate_per_second", config["front"])
            self.assertIn(config["storage"]["backend"], ("sqlite", "postgres"))
        self.assertEqual(stack.load_config(os.path.join(ROOT, "deploy", "staging.json"), [])["storage"]["backend"], "postgres")

    def test_defaults_fill_what_a_configuration_leaves_out(self):
        config = self.load(minimal_config())
        self.assertEqual(config["workers"]["history_window"], 20)
        self.assertEqual(config["hosts"]["synchronous"], "full")
        self.assertEqual(config["front"]["tls"], None)
        self.assertEqual(config["run_dir"], os.path.join(ROOT, "run/test"))

    def test_an_unknown_key_is_refused_by_its_dotted_path(self):
        message = self.refused(minimal_config(workers={"count": 1, "first_port": 18600, "cuont": 2}))
        self.assertIn("'workers.cuont' is not a setting", message)
        self.assertIn("count", message)

    def test_a_value_of_the_wrong_kind_is_refused_naming_key_and_value(self):
        self.assertIn("workers.count must be a whole number (got 'two')", self.refused(minimal_config(workers={"count": "two"})))
        self.assertIn("hosts.synchronous must be one of full, normal (got 'fast')",
                      self.refused(minimal_config(hosts={"synchronous": "fast"})))
        self.assertIn("front.listen must be HOST:PORT", self.refused(minimal_config(front={"listen": "nowhere"})))
        self.assertIn("workers.count must be in 1...64", self.refused(minimal_config(workers={"count": 65})))

    def test_task_settings_are_checked_by_their_dotted_paths(self):
        config = self.load(minimal_config(), ["workers.tasks.lease=2", "workers.tasks.ttl_max=7200"])
        self.assertEqual(config["workers"]["tasks"], {"lease": 2, "ttl_max": 7200})
        self.assertEqual(self.load(minimal_config())["workers"]["tasks"], {})
        self.assertIn("workers.tasks.lease must be a number of seconds from 1 to 600", self.refused(minimal_config(), ["workers.tasks.lease=0"]))
        self.assertIn("'workers.tasks.leese' is not a setting", self.refused(minimal_config(), ["workers.tasks.leese=2"]))

    def test_a_missing_required_key_is_named(self):
        config = minimal_config()
        del config["hosts"]["first_port"]
        self.assertIn("key 'hosts.first_port' is required", self.refused(config))

    def test_set_overrides_one_key_by_its_dotted_path(self):
        config = self.load(minimal_config(), ["workers.count=4", "front.server_name=mcp.example.com", "hosts.log_level=debug"])
        self.assertEqual(config["workers"]["count"], 4)
        self.assertEqual(config["front"]["server_name"], "mcp.example.com")
        self.assertEqual(config["hosts"]["log_level"], "debug")
        self.assertIn("--set takes KEY=VALUE", self.refused(minimal_config(), ["workers.count"]))
        self.assertIn("workers.count must be a whole number", self.refused(minimal_config(), ["workers.count=many"]))

    def test_ports_that_overlap_are_refused(self):
        self.assertIn("overlap", self.refused(minimal_config(hosts={"first_port": 18610})))
        self.assertIn("front.listen's port", self.refused(minimal_config(front={"listen": "127.0.0.1:18700"})))
        postgres = {"backend": "postgres", "data_dir": "d", "postgres_port": 18600}
        self.assertIn("storage.postgres_port 18600", self.refused(minimal_config(storage=postgres)))

    def test_files_named_by_the_configuration_must_exist_and_fit_the_backend(self):
        missing = os.path.join(self.directory.name, "nowhere")
        self.assertIn("does not exist", self.refused(minimal_config(workers={"api_keys_file": missing})))
        self.assertIn("host_token_file names", self.refused(dict(minimal_config(), host_token_file=missing)))
        url_file = os.path.join(self.directory.name, "url")
        with open(url_file, "w") as handle:
            handle.write("postgres://example/db\n")
        self.assertIn("is for storage.backend postgres",
                      self.refused(minimal_config(storage={"backend": "sqlite", "data_dir": "d", "database_url_file": url_file})))
        config = self.load(minimal_config(storage={"backend": "postgres", "data_dir": "d", "database_url_file": url_file}))
        self.assertEqual(config["storage"]["database_url_file"], url_file)

    def test_a_file_that_is_not_a_json_object_is_refused(self):
        path = os.path.join(self.directory.name, "broken.json")
        with open(path, "w") as handle:
            handle.write("{not json")
        with self.assertRaises(stack.ConfigError) as caught:
            stack.load_config(path, [])
        self.assertIn("is not valid JSON", str(caught.exception))
        with open(path, "w") as handle:
            handle.write("[1, 2]")
        with self.assertRaises(stack.ConfigError) as caught:
            stack.load_config(path, [])
        self.assertIn("must hold a JSON object", str(caught.exception))


class BenchArgumentTests(unittest.TestCase):
    def test_defaults_and_quick(self):
        duration, scale, kills, output = bench.parse_arguments([])
        self.assertEqual((duration, scale, kills), (10, 1_000_000, 10))
        self.assertEqual(output, os.path.join(ROOT, "BENCHMARKS.md"))
        self.assertEqual(bench.parse_arguments(["--quick"])[:3], (3, 100_000, 3))
        self.assertEqual(bench.parse_arguments(["--quick", "--kills", "12"])[2], 12)
        self.assertEqual(bench.parse_arguments(["--duration", "5", "--output", "x.md"]), (5, 1_000_000, 10, "x.md"))

    def test_nonsense_is_refused(self):
        for argv in (["--kills", "0"], ["--duration", "0"], ["--duration", "soon"]):
            with self.assertRaises(SystemExit) as caught, open(os.devnull, "w") as quiet:
                stderr, sys.stderr = sys.stderr, quiet
                try:
                    bench.parse_arguments(argv)
                finally:
                    sys.stderr = stderr
            self.assertEqual(caught.exception.code, 2, argv)


class BenchCorpusTests(unittest.TestCase):
    def test_greptile_like_answers_are_markdown_with_code_and_the_same_every_run(self):
        answers = bench.greptile_like_answers(40)
        self.assertEqual(answers, bench.greptile_like_answers(40))
        self.assertEqual(len(answers), 40)
        for answer in answers:
            self.assertIn("```swift\n", answer)
            self.assertIn("### `Sources/", answer)
            self.assertEqual(answer.count("```") % 2, 0)
        sizes = sorted(len(answer.encode()) for answer in answers)
        self.assertGreater(sizes[len(sizes) // 2], 2048, "most answers are past the default compress_threshold")
        self.assertLess(sizes[-1], 256 * 1024, "every answer fits the host's max_content_bytes")

    def test_database_bytes_counts_the_database_and_its_wal_only(self):
        with tempfile.TemporaryDirectory() as directory:
            for name, size in (("sessions.sqlite", 4096), ("sessions.sqlite-wal", 1000), ("held.sqlite", 77), ("host.log", 5)):
                with open(os.path.join(directory, name), "wb") as handle:
                    handle.write(b"x" * size)
            self.assertEqual(bench.database_bytes(directory), 5096)


class ProcessHelperTests(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()
        self.log = os.path.join(self.directory.name, "process.log")

    def tearDown(self):
        self.directory.cleanup()

    def python(self, code):
        return stacklib.spawn([sys.executable, "-c", code], self.log)

    def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(self):
        process = self.python("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)")
        deadline = time.monotonic() + 10
        while "ready" not in open(self.log).read() and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        stacklib.stop(process.pid, timeout=0.5)
        self.assertEqual(process.wait(timeout=5), -signal.SIGKILL)
        self.assertLess(time.monotonic() - started, 5)

    def test_a_zombie_is_not_alive(self):
        process = self.python("pass")
        deadline = time.monotonic() + 10
        while stacklib.alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertFalse(stacklib.alive(process.pid), "an exited, unreaped child counts as gone")
        self.assertIsNone(process.returncode, "and it had not been reaped")
        process.wait()

    def test_wait_healthy_reports_a_process_that_exited_with_its_log(self):
        process = self.python("import sys\nprint('cannot open the data directory', flush=True)\nsys.exit(3)")
        with self.assertRaises(RuntimeError) as caught:
            stacklib.wait_healthy("http://127.0.0.1:%d/health" % stacklib.free_port(), process.pid, self.log, "the host", timeout=10)
        self.assertIn("the host exited at start", str(caught.exception))
        self.assertIn("cannot open the data directory", str(caught.exception))
        process.wait()

    def test_wait_healthy_waits_for_the_status_asked_for(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path == "/health" else 404)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            base = "http://127.0.0.1:%d" % server.server_address[1]
            stacklib.wait_healthy(base + "/health", timeout=5)
            stacklib.wait_healthy(base + "/missing", timeout=5, accept=None)
            with self.assertRaises(RuntimeError) as caught:
                stacklib.wait_healthy(base + "/missing", timeout=0.5, what="the front")
            self.assertIn("the front did not answer", str(caught.exception))
            self.assertEqual(stacklib.http_get(base + "/health")[0], 200)
        finally:
            server.shutdown()
            server.server_close()

    def test_as_server_drops_root_only_for_root(self):
        arguments = ["/usr/lib/postgresql/15/bin/postgres", "-D", "data"]
        if os.geteuid() == 0:
            self.assertEqual(stacklib.as_server(arguments)[:2], ["setpriv", "--reuid=postgres"])
            self.assertEqual(stacklib.as_server(arguments)[-3:], arguments)
        else:
            self.assertEqual(stacklib.as_server(arguments), arguments)

    @unittest.skipUnless(os.geteuid() == 0, "only root runs PostgreSQL as another user")
    def test_a_directory_the_postgres_user_cannot_enter_is_refused_by_name(self):
        with tempfile.TemporaryDirectory() as private:
            os.chmod(private, 0o700)
            directory = os.path.join(private, "postgres")
            with self.assertRaises(stacklib.SetupError) as caught:
                stacklib.start_postgres(directory, stacklib.free_port(), os.path.join(private, "postgres.log"), announce=lambda _: None)
            self.assertIn("cannot enter " + directory, str(caught.exception))
            self.assertFalse(os.path.exists(os.path.join(directory, "data")), "initdb was not run")


if __name__ == "__main__":
    unittest.main()
