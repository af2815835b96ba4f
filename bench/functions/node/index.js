// No-op nodejs20.x function for the Kindling benchmark (handler: index.handler).
// Returns the event unchanged, like the native no-op bootstrap, so every runtime does the same work.
exports.handler = async (event) => event;
