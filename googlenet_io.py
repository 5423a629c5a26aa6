"""What the scripts share: errors, atomic writes, downloads, images, labels."""
import argparse
import concurrent.futures
import contextlib
import hashlib
import io
import os
import queue
import sys
import tempfile
import threading
import urllib.parse
import warnings

import numpy
from PIL import Image, ImageOps, UnidentifiedImageError

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
CHUNK = 1 << 20


class UserError(Exception):
    """A problem with the user's input; reported as one line, no traceback."""


class Unreachable(UserError):
    """The server could not be reached at all (as opposed to answering badly)."""


def report_errors(function, *args, **kwargs):
    """Runs function; a UserError becomes one line on stderr and exit code 1."""
    try:
        result = function(*args, **kwargs)
    except UserError as e:
        print('error: {}'.format(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    return 0 if result is None else result


def positive_int(text):
    """An argparse type: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            'expected a positive whole number, got {!r}'.format(text))
    return value


def one_line(exc):
    """The first line of an exception's message, for one-line reports."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Yields a file that replaces ``path`` only once it is completely written.

    A crash or an exception at any moment leaves the old file (or none) in
    place and no temporary file behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, suffix='.tmp',
                                   prefix='.' + os.path.basename(path) + '.')
    except OSError as e:
        raise UserError('cannot write {}: {}'.format(path, e.strerror or e))
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 is for secrets
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_scheme(url):
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ('http', 'https'):
        raise UserError('unsupported URL scheme {!r} (only http and https)'
                        .format(scheme))


def http_get(url, headers=None, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)):
    """Starts a streamed GET and turns transport failures into UserErrors."""
    check_scheme(url)
    # Imported here: requests takes a third of a local run's start-up.
    import requests
    try:
        response = requests.get(url, headers=headers, stream=True,
                                timeout=timeout)
    except requests.exceptions.ConnectTimeout:
        raise Unreachable('cannot reach {}: connection timed out'.format(
            urllib.parse.urlsplit(url).netloc))
    except requests.exceptions.ConnectionError as e:
        raise Unreachable('cannot reach {}: {}'.format(
            urllib.parse.urlsplit(url).netloc, _connection_reason(e)))
    except requests.exceptions.Timeout:
        raise UserError('timed out waiting for the server')
    except requests.exceptions.RequestException as e:
        raise UserError(one_line(e))
    if response.status_code >= 400:
        response.close()
        raise UserError('HTTP {} {}'.format(
            response.status_code, response.reason or '').strip())
    return response


def _connection_reason(exc):
    text = str(exc)
    for reason in ('Name or service not known', 'Connection refused',
                   'Temporary failure in name resolution',
                   'No route to host', 'Network is unreachable'):
        if reason in text:
            return reason.lower()
    return 'connection failed'


def iter_body(response):
    """The response body in chunks; a stalled or cut connection is a UserError."""
    import requests
    try:
        yield from response.iter_content(CHUNK)
    except requests.exceptions.ChunkedEncodingError:
        raise UserError('the download broke off (the connection closed '
                        'before the end)')
    except requests.exceptions.ConnectionError as e:
        raise UserError('the download broke off ({})'.format(
            _connection_reason(e) if 'timed out' not in str(e)
            else 'read timed out'))
    except requests.exceptions.RequestException as e:
        raise UserError('the download broke off ({})'.format(one_line(e)))


def fetch_bytes(url, max_bytes, timeout=READ_TIMEOUT):
    """The body of url in memory, refusing anything over max_bytes."""
    response = http_get(url, timeout=(CONNECT_TIMEOUT, timeout))
    with response:
        length = response.headers.get('Content-Length')
        if length and length.isdigit() and int(length) > max_bytes:
            raise UserError('larger than the download limit ({} > {} bytes)'
                            .format(length, max_bytes))
        body = bytearray()
        for chunk in iter_body(response):
            body += chunk
            if len(body) > max_bytes:
                raise UserError('larger than the download limit ({} bytes)'
                                .format(max_bytes))
    return bytes(body)


def file_sha1(path):
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest


def download_file(url, dest, sha1=None, progress=True):
    """Downloads url to dest, resuming ``dest.part``, verifying the sha1.

    The file appears at dest only when it is complete and verified.
    """
    part = dest + '.part'
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {'Range': 'bytes={}-'.format(offset)} if offset else None
    try:
        response = http_get(url, headers=headers)
    except UserError as e:
        # 416: the part file already holds the whole body.
        if not (offset and str(e).startswith('HTTP 416')):
            raise
        response = None
    if response is not None:
        _receive(response, part, offset, os.path.basename(dest), progress)
    if sha1:
        actual = file_sha1(part).hexdigest()
        if actual != sha1.lower():
            os.unlink(part)
            raise UserError('checksum mismatch: expected sha1 {}, got {}; '
                            'the download was removed, run again to fetch '
                            'it afresh'.format(sha1, actual))
    os.replace(part, dest)


def _receive(response, part, offset, name, progress):
    with response:
        if response.status_code != 206:
            offset = 0  # the server ignored the range: start afresh
        total = _total_size(response, offset)
        try:
            out = open(part, 'ab' if offset else 'wb')
        except OSError as e:
            raise UserError('cannot write {}: {}'.format(
                part, e.strerror or e))
        done = offset
        try:
            with out:
                for chunk in iter_body(response):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        _show_progress(name, done, total)
        finally:
            if progress and done > offset:
                print(file=sys.stderr)  # end the progress line


def _total_size(response, offset):
    length = response.headers.get('Content-Length')
    return offset + int(length) if length and length.isdigit() else None


def _show_progress(name, done, total):
    if total:
        text = '\rdownloading {} {:5.1f}% {:.1f}/{:.1f} MB'.format(
            name, 100.0 * done / total, done / 1e6, total / 1e6)
    else:
        text = '\rdownloading {} {:.1f} MB'.format(name, done / 1e6)
    sys.stderr.write(text)
    sys.stderr.flush()


# --- images: Caffe's reference preprocessing ------------------------------

MEAN_BGR = numpy.array([104.0, 117.0, 123.0], dtype=numpy.float32)
RESIZE = 256
CROP = 224
CENTER = (RESIZE - CROP) // 2
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff',
                    '.webp', '.ppm', '.pgm')


def open_image(source):
    """A decoded RGB PIL image from a path or bytes, EXIF orientation applied.

    Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) stays on and
    is enforced as an error rather than a warning.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                return image.convert('RGB')
    except FileNotFoundError:
        raise UserError('no such file')
    except IsADirectoryError:
        raise UserError('is a folder')
    except (Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise UserError('larger than the pixel limit ({})'.format(
            one_line(e).split(',')[0]))
    except UnidentifiedImageError:
        raise UserError('not an image')
    except (OSError, SyntaxError, ValueError) as e:
        text = one_line(e)
        if 'truncated' in text.lower() or 'broken data stream' in text:
            raise UserError('truncated image')
        raise UserError('cannot decode image ({})'.format(text))


def resized_bgr(image):
    """The 256x256 image as float32 HWC, BGR, minus the mean."""
    image = image.resize((RESIZE, RESIZE), Image.BILINEAR)
    array = numpy.asarray(image, dtype=numpy.float32)[:, :, ::-1]
    return array - MEAN_BGR


def crop(array, top=CENTER, left=CENTER, mirror=False):
    """A 224x224 CHW crop of a resized_bgr array, mirrored if asked."""
    patch = array[top:top + CROP, left:left + CROP]
    if mirror:
        patch = patch[:, ::-1]
    return numpy.ascontiguousarray(patch.transpose(2, 0, 1))


def preprocess(image):
    """Caffe's reference input: the centre 224 crop of the 256x256 image."""
    return crop(resized_bgr(image))


def ten_crops(image):
    """Caffe's oversample: four corners and the centre, each also mirrored."""
    array = resized_bgr(image)
    far = RESIZE - CROP
    offsets = [(0, 0), (0, far), (far, 0), (far, far), (CENTER, CENTER)]
    return numpy.stack([crop(array, top, left, mirror)
                        for mirror in (False, True)
                        for top, left in offsets])


def list_images(folder):
    """The image files directly in folder, sorted by name."""
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.lower().endswith(IMAGE_EXTENSIONS)
                  and os.path.isfile(os.path.join(folder, name)))


def read_labels(path):
    """One label per non-empty line (Caffe's synset_words.txt format)."""
    try:
        with open(path, encoding='utf-8') as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise UserError('cannot read label file {}: {}'.format(
            path, e.strerror or e))


def prefetch(function, items, ahead=2):
    """Yields (item, future of function(item)) for each item, in order.

    One daemon thread works through the items ahead of the caller, at most
    ``ahead`` results in hand, so that decoding and resizing (Pillow and
    numpy release the GIL) overlap with what the caller does meanwhile (the
    forward pass). ``future.result()`` returns the result or raises what
    function raised. Closing the generator early (an error, Ctrl-C) stops
    the thread after its current item; being a daemon it never holds up the
    process's exit.
    """
    done = object()
    ready = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def put(entry):
        # A timeout, not a blocking put: a closed generator takes no more.
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return
            except queue.Full:
                pass

    def work():
        for item in items:
            if stop.is_set():
                return
            future = concurrent.futures.Future()
            try:
                future.set_result(function(item))
            except BaseException as e:  # the caller decides what it means
                future.set_exception(e)
            put((item, future))
        put(done)

    threading.Thread(target=work, name='prefetch', daemon=True).start()
    try:
        while True:
            entry = ready.get()
            if entry is done:
                return
            yield entry
    finally:
        stop.set()
