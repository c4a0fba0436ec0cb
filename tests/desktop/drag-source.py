#!/usr/bin/python3
"""A small window that offers files for a native drag (XDND), as a file
manager does, for the desktop tests: `drag-source.py X Y PATH...` shows it at
(X, Y), prints `ready` once it is on screen, and `drag-end` when a drag from
it ended. The test then presses, moves and releases the real pointer (xdotool)
from this window onto the app's, so the drop goes through X, GTK, WebKitGTK
and Tauri exactly as a drop from a file manager would."""

import sys

import gi

gi.require_version("Gdk", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gdk, GLib, Gtk  # noqa: E402


def main():
    x, y = int(sys.argv[1]), int(sys.argv[2])
    uris = [GLib.filename_to_uri(p, None) for p in sys.argv[3:]]

    window = Gtk.Window(title="drag source")
    window.set_decorated(False)
    window.set_default_size(120, 80)
    window.move(x, y)
    box = Gtk.EventBox()
    box.add(Gtk.Label(label="drag me"))
    window.add(box)

    box.drag_source_set(Gdk.ModifierType.BUTTON1_MASK, [], Gdk.DragAction.COPY)
    box.drag_source_add_uri_targets()

    def data_get(_widget, _context, selection, _info, _time):
        selection.set_uris(uris)

    def drag_end(_widget, _context):
        print("drag-end", flush=True)

    box.connect("drag-data-get", data_get)
    box.connect("drag-end", drag_end)
    window.connect("map-event", lambda *_: print("ready", flush=True))
    window.connect("destroy", Gtk.main_quit)
    window.show_all()
    Gtk.main()


if __name__ == "__main__":
    main()
