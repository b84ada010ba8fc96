"""Telling a person: what to say (messages), once per cause and day (ledger), through Apprise
(sender), and the dead man's switch (healthcheck). Plain Python; the sensors are in assets/."""
