"""The storage contract both sides share: layout and schemas, the write protocol, validation,
errors, reserved names and the row builders every change uses (pyarrow and stdlib only)."""
