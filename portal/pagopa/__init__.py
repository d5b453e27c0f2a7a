"""The pagoPA integration: GPD, Checkout and FdR clients, the SOAP endpoint for the node, and the sandbox."""
