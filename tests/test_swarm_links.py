#!/usr/bin/python3
"""The swarm where links differ, at the default settings (the testbed writes topology and keys
only): what users run is what is tested.

- Mixed links: peers at 20, 50, 50, 200 and 200 Mbit/s and the rest at the common rate. Every
  copy exact, the origin sends about one copy, and no daemon crashes (the suite runs this under
  ASan too): a parent set that changes while requests are in flight on unequal links is where
  a double free lived (issue 9).
- A slow seed, at a quarter of the peers' rate: it is everyone's parent and busy all the
  time. Busy is not failed: the scheduler never marks it bad, and the origin still sends about
  one copy (children that gave up on a slow seed used to go back to source).

- More peers than a child has parents (the scheduler's `parents`, 8): every peer that holds
  pieces serves some. Children fill their parent sets with the peers that hold pieces when
  they ask; a peer that got its first pieces a moment later used to be nobody's parent for
  the whole download, its uplink idle and the first copies the seed gave it stuck there
  (docs/benchmarks.md, "Every holder a parent").

The harness is tests/swarmtest.py."""
from swarmtest import SwarmCase
from zflytest import main


class MixedLinksTest(SwarmCase):
    PEERS = 6
    FILE_SIZE = "48M"
    LINK = "100mbit"
    RATES = "20mbit,50mbit,50mbit,200mbit,200mbit"

    def test_mixed_links(self):
        """Unequal links: exact copies, about one copy from the origin, no crash."""
        task_id, _ = self.download_everywhere()
        self.assert_sane_graph("s1", task_id)
        self.assert_daemons_clean()


class SlowSeedTest(SwarmCase):
    PEERS = 4
    FILE_SIZE = "32M"
    LINK = "100mbit"
    SEED_LINK = "25mbit"

    def test_slow_seed_is_never_bad(self):
        """The seed at a quarter of the peers' rate: never marked bad, the origin sends about
        one copy."""
        self.download_everywhere()
        self.assertNotIn("host marked bad", self.daemon_log("s1"))
        metrics = self.scheduler_metrics("s1")
        self.assertEqual(metrics.get("zfly_scheduler_hosts_marked_bad_total", 0), 0, metrics)
        self.assert_daemons_clean()


class WideSwarmTest(SwarmCase):
    PEERS = 10
    FILE_SIZE = "48M"
    LINK = "100mbit"

    def test_every_holder_serves(self):
        """10 peers with 3 parents each (the scheduler's `parents`, set low so that a test
        of 10 peers has the shape of a swarm of dozens at the default 8): every peer serves
        pieces to others."""
        task_id, _ = self.download_everywhere(
            scheduler_extra="heartbeat = 1s\nhost_timeout = 5s\nparents = 3\n")
        self.assert_sane_graph("s1", task_id)
        served = {peer: self.node_metrics(peer).get(
                      'zfly_storage_pieces_served_total{peer="remote"}', 0)
                  for peer in self.peers()}
        idle = sorted(peer for peer, count in served.items() if count == 0)
        self.assertEqual(idle, [], f"peers that served nobody: {idle} (pieces served: {served})")
        given = self.scheduler_metrics("s1").get("zfly_scheduler_children_given_total", 0)
        print(f"children given by the scheduler: {given:.0f}; pieces served: {served}")
        self.assert_daemons_clean()


if __name__ == "__main__":
    main()
