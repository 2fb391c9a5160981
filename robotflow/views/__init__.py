"""Live and recorded views of robotflow data (Rerun)."""
