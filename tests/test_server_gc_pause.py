"""gc_pause: no automatic full collection while a config is built; a replaced config is
freed a few objects at a time, never touching what is still in use."""

from __future__ import annotations

import gc
import threading
import weakref

from pilotfish.server import gc_pause


class Leaf:
    def __init__(self, value: int) -> None:
        self.value = value


def test_building_turns_full_collections_off_until_the_last_builder_leaves() -> None:
    before = gc.get_threshold()
    entered = threading.Event()
    leave = threading.Event()

    def other_builder() -> None:
        with gc_pause.building():
            entered.set()
            leave.wait(10)

    with gc_pause.building():
        assert gc.get_threshold()[:2] == before[:2]  # young collections go on
        assert gc.get_threshold()[2] > 10**9
        thread = threading.Thread(target=other_builder)
        thread.start()
        assert entered.wait(10)
    assert gc.get_threshold()[2] > 10**9  # the other one is still building
    leave.set()
    thread.join(10)
    assert gc.get_threshold() == before


def test_release_in_pieces_frees_what_only_it_held_and_keeps_what_is_shared() -> None:
    shared = Leaf(1)
    own = [Leaf(i) for i in range(100)]
    owned = [weakref.ref(leaf) for leaf in own]
    config = {"own": own, "nested": (Leaf(2), {"shared": shared}), "name": "config"}
    owned.append(weakref.ref(config["nested"][0]))  # type: ignore[index]
    box: list[object] = [config]
    del own, config
    gc_pause.release_in_pieces(box)
    assert box == []
    assert all(ref() is None for ref in owned)
    assert shared.value == 1 and vars(shared) == {"value": 1}  # still whole
