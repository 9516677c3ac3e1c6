"""Services: every write is a named action taking a Context and an acting user.

Interfaces (CLI, HTTP) parse input, open one transaction, call one service
function and render its result. Permission checks happen here, never above.
"""
