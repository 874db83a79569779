"""The CLI's end of a task's terminal (``task exec -t``): the window size to create it with, and
copying between our terminal (raw meanwhile) and the pty master the shim passed us."""

from __future__ import annotations

import os


def window_size(stdio: tuple[int, int, int]) -> tuple[int, int] | None:
    """(rows, columns) of the first of ``stdio`` that is a terminal with a size, else None."""
    import fcntl
    import struct
    import termios

    for fd in stdio:
        try:
            rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))[:2]
        except OSError:
            continue
        if rows and cols:
            return rows, cols
    return None


def attach(master: int, stdio: tuple[int, int, int]) -> None:
    """Copies between our terminal and a process's pty ``master`` until the process has closed it,
    or our output's reader has left (``… | head -1``): then the terminal hangs up as the shim's
    does (``Shim._output_gone``). Our terminal is raw meanwhile, and its size follows the window
    (SIGWINCH)."""
    import fcntl
    import select
    import signal
    import termios
    import tty

    def resize(*_: object) -> None:
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(stdio[0], termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass

    saved = termios.tcgetattr(stdio[0]) if os.isatty(stdio[0]) else None
    old_winch = signal.signal(signal.SIGWINCH, resize)
    try:
        if saved is not None:
            tty.setraw(stdio[0])
        resize()
        sources = [master, stdio[0]]
        last = b"\n"  # the last byte we copied in: ^D ends a line first, then the input
        while True:
            try:
                ready = select.select(sources, [], [])[0]
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    return
                try:
                    os.write(stdio[1], data)
                except BrokenPipeError:
                    return  # closing the master below hangs the terminal up
            if stdio[0] in ready:
                data = os.read(stdio[0], 65536)
                if data:
                    os.write(master, data)
                    last = data[-1:]
                else:
                    sources.remove(stdio[0])
                    if saved is None:  # a pipe or file, not our terminal: its end is the input's end
                        _end_input(master, last)
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            termios.tcsetattr(stdio[0], termios.TCSADRAIN, saved)
        os.close(master)


def _end_input(master: int, last: bytes) -> None:
    """The terminal's end of file (^D, as script(1) sends it, twice after a partial line), as the
    shim gives a ``run -t`` task whose stdin ends (``Shim._end_input``)."""
    try:
        os.write(master, b"\x04" if last == b"\n" else b"\x04\x04")
    except OSError:
        pass
