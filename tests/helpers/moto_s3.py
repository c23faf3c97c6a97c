"""moto's S3/IAM/STS stand-in on loopback for the tests that speak to AWS (the TLS agent's fetch, the reboot peer
list, preflight): one server per module, on a port the kernel picks (port 0, read back), so parallel test workers
never race for the same port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def moto_server(bucket: str | None = None) -> Iterator[str]:
    """The server's URL; ``bucket`` created first when given."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        if bucket is not None:
            import boto3

            boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k",
                         aws_secret_access_key="s").create_bucket(Bucket=bucket)
        yield url
    finally:
        server.stop()
