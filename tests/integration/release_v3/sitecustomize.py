"""A later release of the app, as the schema-evolution test runs it: OrderCreated v3 is
current, and v2 is upcast to it. Python imports this module at start when its folder is on
PYTHONPATH (`sitecustomize`), before the worker reads a record."""

from streams import upcast, validation
from streams.records import ORDER_SCHEMA

validation.ORDER_VERSION = 3
upcast.UPCASTERS[ORDER_SCHEMA, 2] = lambda body: {**body, "version": 3}
