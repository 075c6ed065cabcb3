"""The Pulumi program: one module per concern, composed by `infra.program.build()`."""
