"""marshmallow request (``XxxIn``) and response (``XxxOut``) schemas, one module per area."""
