"""kombu's filesystem transport, with messages that appear whole or not at all.

The stock transport creates `<time>_<uuid>.<queue>.msg` under its final name, then locks and
writes it; a consumer polling in between moves and reads the still empty file, and the worker
dies on the JSON error (under `make run` that stops every process). Here a message is written
to a hidden temporary file and renamed into place, which is atomic on POSIX file systems, so a
consumer sees either nothing or the complete message.
"""

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: `_get` only takes names whose part after the first dot is
        # "<queue>.msg", which this temporary name never is.
        temporary = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        """The stock `_get`, except that an empty or unreadable message is skipped, not fatal.

        Our own `_put` never leaves one; another writer (an older process during an upgrade, a
        full disk) might, and one bad file must not stop the worker: the batch it named is
        still pending in the database, and the sweeper asks for a drain again.
        """
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            target = self.processed_folder if self.store_processed else tempfile.gettempdir()
            try:
                shutil.move(os.path.join(self.data_folder_in, name), target)
            except OSError:
                continue  # another consumer took it
            path = os.path.join(target, name)
            try:
                with open(path, "rb") as handle:
                    payload = handle.read()
                if not self.store_processed:
                    os.remove(path)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {path!r} from queue.") from exc
            try:
                return loads(payload.decode())
            except (UnicodeDecodeError, ValueError):
                log.error("skipped an unreadable message file %s (%d bytes)", name, len(payload))
                continue
        raise filesystem.Empty()


class Transport(filesystem.Transport):
    Channel = Channel
