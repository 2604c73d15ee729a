"""stub"""
HELP = "(not written yet)"
EXAMPLES = ""
def add_arguments(p):
    pass
def run(args):
    raise SystemExit("not yet")
