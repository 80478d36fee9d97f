"""An example application for compose.yaml: picks its model from budget-guard's env file.

``env_file:`` in compose is read once, when the container is created, so it cannot follow the
fallback. ``guard.chain.ModelChain`` re-reads /run/budget-guard/model.env (a read-only volume
shared with budget-guard) whenever it changes, with no restart. A real application calls
``chain.call(ask, prompt)`` around its ``client.messages.create``; this one only reports.
"""

import logging
import time

from guard.chain import ModelChain

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
chain = ModelChain(env_file="/run/budget-guard/model.env", default=("claude-sonnet-4-6",))
current: tuple[str, ...] = ()
while True:
    models = chain.models()
    if models != current:
        logging.info("model chain now: %s", " -> ".join(models))
        current = models
    time.sleep(10)
