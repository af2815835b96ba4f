# No-op python3.11 function for the Kindling benchmark (handler: noop.handler).
# Returns the event unchanged, like the native no-op bootstrap, so every runtime does the same work.
def handler(event, context):
    return event
