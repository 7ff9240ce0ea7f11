"""Apache Kafka 4.1 (single-node KRaft) from the Maven Central jars, under `<home>/`.

Layout: <home>/data (log dirs), server.properties, log4j2.properties, kafka.log, kafka.pid.
The jars are fetched once with Maven into jar_cache(), shared by every home (every
CLICKSTREAM_VAR_DIR), bootstrap.sh and the tests. Listeners bind 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from clickstream.local.process import LocalServiceError, ServerProcess, free_port

POM = Path(__file__).with_name("kafka-pom.xml")
CHECKOUT = Path(__file__).resolve().parents[2]  # the source tree, when run from one

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=-1
log.segment.bytes=67108864
"""

LOG4J2 = """\
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
"""


def jar_cache() -> Path:
    """Where the Kafka jars live, whatever CLICKSTREAM_VAR_DIR says: var/kafka/jars of the source
    checkout (where bootstrap.sh fetches them), or ~/.cache/clickstream/kafka-jars for an
    installed package."""
    if (CHECKOUT / "pyproject.toml").is_file():
        return CHECKOUT / "var" / "kafka" / "jars"
    return Path.home() / ".cache" / "clickstream" / "kafka-jars"


def fetch_jars(jars: Path) -> None:
    """Copy the broker jars and their dependencies from Maven Central into `jars` (once)."""
    if (jars / ".complete").is_file():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalServiceError("mvn is not installed; install Maven (apt-get install maven)")
    jars.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={jars.resolve()}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise LocalServiceError("fetching Kafka jars with Maven failed: " + " | ".join(tail))
    (jars / ".complete").write_text("ok\n")


def new_cluster_id() -> str:
    """A random KRaft cluster id (22 characters of base64url), never starting with "-": the
    storage tool would read one in 64 of them as an option and fail."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class LocalKafka:
    def __init__(self, home: Path, port: int, jars: Path | None = None) -> None:
        self.home = home
        self.port = port
        self.jars = jars or jar_cache()
        self.data = home / "data"
        self.process = ServerProcess("kafka", home, port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise LocalServiceError("java is not installed; install OpenJDK 17")
        return [
            java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={(self.home / 'log4j2.properties').resolve()}",
            "-cp", f"{self.jars.resolve()}/*", *args,
        ]  # fmt: skip

    def _configure(self) -> Path:
        props = self.home / "server.properties"
        controller_port = free_port()
        props.write_text(
            SERVER_PROPERTIES.format(
                port=self.port, controller_port=controller_port, data=self.data.resolve()
            )
        )
        (self.home / "log4j2.properties").write_text(
            LOG4J2.format(log=(self.home / "server.log").resolve())
        )
        return props

    def start(self, timeout: float = 90.0) -> None:
        """Fetch jars, format storage on first start, start the broker and wait for its port."""
        if self.process.running():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        fetch_jars(self.jars)
        props = self._configure()
        if not (self.data / "meta.properties").is_file():
            cluster_id = new_cluster_id()
            formatted = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                capture_output=True, text=True,
            )  # fmt: skip
            if formatted.returncode != 0:
                said = (formatted.stderr or formatted.stdout).strip().splitlines()[-3:]
                raise LocalServiceError(f"formatting Kafka storage failed: {' / '.join(said)}")
        self.process.spawn(self._java("kafka.Kafka", str(props)))
        try:
            self.process.wait_ready(timeout)
        except LocalServiceError as exc:
            raise LocalServiceError(f"{exc}\n{self.process.tail()}") from None

    def stop(self) -> None:
        self.process.stop()

    def status(self) -> str:
        pid = self.process.pid()
        return f"kafka running pid={pid} at {self.bootstrap}" if pid else "kafka stopped"
