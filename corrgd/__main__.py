from corrgd.cli import app

app(prog_name="corrgd")
