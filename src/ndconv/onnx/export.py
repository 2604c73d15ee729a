"""Export placeholder (filled in below)."""
EXPORT_OPSET = 17
EXPORT_IR_VERSION = 8


def save(model, path, input_shape):
    raise NotImplementedError
