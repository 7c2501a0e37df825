"""The transport-free core: subjects, subscriptions, settings and the Event value. Knows nothing of Pyro5."""
