"""Fonts for class names in figures: the installed fonts that have the
glyphs of names in any script (Japanese, Chinese, ...), and what a figure
draws where none has them.

matplotlib draws with one font family list and falls back glyph by glyph
along it; its own font list is cached when matplotlib is first used, so a
font installed later (apt-get install fonts-noto-cjk) is found here from
the system's font folders instead."""
import functools
import os

# Words in a font file's name that mark a style other than the plain one.
STYLED = ('bold', 'italic', 'oblique', 'light', 'thin', 'black', 'heavy',
          'medium', 'mono', 'condensed')


@functools.lru_cache(maxsize=None)
def glyphs(path):
    """The code points a font file has glyphs for (of its first face).

    Args:
        path: a font file (.ttf, .otf, .ttc).

    Returns:
        frozenset of int; empty for a file FreeType cannot read.
    """
    from matplotlib.ft2font import FT2Font
    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def installed_fonts():
    """The font files matplotlib knows and those in the system's font
    folders, plain styles first, sans before serif, then by path."""
    from matplotlib import font_manager
    paths = set(font_manager.findSystemFonts()) | {
        entry.fname for entry in font_manager.fontManager.ttflist}

    def plainness(path):
        name = os.path.basename(path).lower()
        return (any(word in name for word in STYLED), 'serif' in name, path)
    return sorted(paths, key=plainness)


def drawable(names):
    """How a figure draws class names: in which fonts, and as what.

    Glyphs the default font lacks are looked for in the installed fonts
    (installed_fonts), which are then added to matplotlib's font family
    list; a name with a character no installed font has is drawn as its
    row number instead of as empty boxes (with a warning per glyph).

    Args:
        names: the class names a figure draws, in the order of the report's
            per-class table.

    Returns:
        (rc, labels, note): matplotlib rc settings to draw with (the font
        families; names drawn as written, not as mathtext), each name as
        it is to be drawn (the name, or ``#N`` for class index N, from 0
        as in predictions.csv and list files), and a line saying what ``#N``
        means ('' when no name was replaced).
    """
    import matplotlib
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font
    families = list(matplotlib.rcParams['font.family'])
    have = set(glyphs(font_manager.findfont(
        font_manager.FontProperties(family=families))))
    missing = {ord(c) for name in names for c in name} - have
    for path in installed_fonts() if missing else ():
        covered = missing & glyphs(path)
        if covered:
            font_manager.fontManager.addfont(path)
            families.append(FT2Font(path).family_name)
            have |= covered
            missing -= covered
            if not missing:
                break
    labels = [name if all(ord(c) in have for c in name) else '#{}'.format(i)
              for i, name in enumerate(names)]
    note = ('#N: class index N (report.html\'s first column, '
            'predictions.csv\'s index), whose name no installed font can '
            'draw'
            if labels != list(names) else '')
    return ({'font.family': families, 'text.parse_math': False}, labels,
            note)
