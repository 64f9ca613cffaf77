"""What the tests share: helpers, local stand-in servers, real worker processes, data fixtures."""
