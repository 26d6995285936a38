"""Sends one small trace with the OpenTelemetry Python SDK and prints its ID.

Usage: send.py grpc|http HOST:PORT SERVICE

A parent span and a child span with typed attributes, an event and an error
status, exported over OTLP gRPC or OTLP HTTP (protobuf), flushed before exit.
"""

import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def main() -> None:
    protocol, addr, service = sys.argv[1:4]
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=addr, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"http://{addr}/v1/traces")
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("skein-e2e", "1.2.3")
    with tracer.start_as_current_span("checkout", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("http.request.method", "POST")
        parent.set_attribute("items", 3)
        parent.set_attribute("ratio", 0.25)
        parent.set_attribute("retry", False)
        parent.set_attribute("tags", ["a", "b"])
        with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as child:
            child.add_event("card declined", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "declined"))
        trace_id = format(parent.get_span_context().trace_id, "032x")
    if not provider.force_flush(30_000):
        sys.exit("flush timed out")
    provider.shutdown()
    print(trace_id)


if __name__ == "__main__":
    main()
