"""Values every layer shares: resources and their kinds, runs, observed state and the
records the store returns. Pure data; imports only `reconciler.core`."""
