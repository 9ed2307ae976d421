"""A throwaway Apache Kafka broker (KRaft, one node acting as broker and controller) on
loopback, from Maven Central jars, for the audit stream tests.

The jars (``kafka_2.13`` and its runtime dependencies, see tests/services/kafka_broker/pom.xml) are
copied once by ``mvn dependency:copy-dependencies`` into ``~/.cache/acgs/kafka-<version>/lib``
(``ACGS_TEST_KAFKA_LIB`` names another directory). Without Java or Maven, or when the jars
cannot be fetched, the tests that need the broker fail rather than pass untested. The broker can
be stopped and started again on the same ports and data, to play a broker outage.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from tests.services.procs import free_port, ports_open, spawn, stop, wait_until

POM = Path(__file__).parent / "kafka_broker" / "pom.xml"
VERSION = "4.1.1"


def kafka_lib() -> Path:
    """The broker's jars, fetched with Maven the first time."""
    lib = Path(os.environ.get("ACGS_TEST_KAFKA_LIB", Path.home() / ".cache" / "acgs" / f"kafka-{VERSION}" / "lib"))
    if lib.is_dir() and any(lib.glob("kafka_2.13-*.jar")):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None or shutil.which("java") is None:
        raise RuntimeError("Java and Maven are needed to run a Kafka broker (Debian packages default-jdk-headless, maven)")
    subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={lib}",
         "-DincludeScope=runtime"],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    return lib


class KafkaBroker:
    def __init__(self, root: Path) -> None:
        self.lib = kafka_lib()
        self.root = root
        self.port = free_port()
        self.controller_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "broker.log"
        self.config = root / "server.properties"
        self.config.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={root / 'data'}",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "num.partitions=1",
                "group.initial.rebalance.delay.ms=0",
            ]) + "\n"
        )  # fmt: skip
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self._java("kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(self.config), wait=True)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, main: str, *args: str, wait: bool = False) -> subprocess.Popen[bytes]:
        cmd = ["java", "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-cp", f"{self.lib}/*", main, *args]
        if wait:
            subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd=self.root)
            return subprocess.Popen(["true"])
        return spawn(cmd, self.log, cwd=self.root)

    def start(self, timeout: float = 90.0) -> None:
        self.proc = self._java("kafka.Kafka", str(self.config))
        wait_until(ports_open(self.port), what="kafka", timeout=timeout, runner=self.proc, log=self.log, interval=0.2)

    def stop(self) -> None:
        stop(self.proc, signal.SIGKILL, grace=30)
        self.proc = None
