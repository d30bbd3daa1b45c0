"""The user documentation holds together: every relative link in README.md, CHANGELOG.md and docs/*.md leads
to a file that exists and, for a Markdown target, to a heading (or HTML anchor) that exists there, with
anchors made the way GitHub makes them; and the README's test command is the one CI runs (.ci/run)."""
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / 'README.md', ROOT / 'CHANGELOG.md', *sorted((ROOT / 'docs').glob('*.md'))]
FENCE = re.compile(r'^\s*(```|~~~)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
INLINE_LINK = re.compile(r'!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
REFERENCE_LINK = re.compile(r'^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$')
HTML_ANCHOR = re.compile(r'<a\s+[^>]*?(?:id|name)\s*=\s*"([^"]+)"')
CODE_SPAN = re.compile(r'(`+)(.+?)\1')


def prose_lines(text):
    """(line number, line) of the lines outside fenced code blocks."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield number, line


def slug(heading):
    """GitHub's anchor of a heading's text: links and code marks reduced to their text, lower case, every
    character but letters, digits, marks, '-', '_' and spaces dropped, each space made a '-'."""
    text = INLINE_LINK.sub(lambda m: m.group(1), heading)
    text = CODE_SPAN.sub(lambda m: m.group(2), text)
    text = re.sub(r'<[^>]+>', '', text).strip().lower()
    kept = ''.join(c for c in text if c.isalnum() or c in '-_ ' or unicodedata.category(c).startswith('M'))
    return kept.replace(' ', '-')


def anchors(path):
    """Every anchor a Markdown file offers: its headings' slugs (repeats numbered -1, -2, ... as GitHub does)
    and its HTML anchors."""
    found, seen = set(), {}
    for _, line in prose_lines(path.read_text(encoding='utf-8')):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f'{base}-{count}')
    return found


def links(path):
    """(line number, target) of every link in a Markdown file's prose (code spans and fences left out)."""
    for number, line in prose_lines(path.read_text(encoding='utf-8')):
        reference = REFERENCE_LINK.match(line)
        if reference:
            yield number, reference.group(1)
            continue
        for match in INLINE_LINK.finditer(CODE_SPAN.sub('', line)):
            yield number, match.group(2)


def is_external(target):
    return re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', target) is not None or target.startswith('//')


def broken_links(path, root=ROOT):
    """'file:line: target (why)' for every relative link of ``path`` whose file or anchor does not exist."""
    problems, cache = [], {}
    for number, target in links(path):
        if is_external(target):
            continue
        file_part, _, anchor = target.partition('#')
        destination = (path.parent / file_part).resolve() if file_part else path
        where = f'{path.relative_to(root)}:{number}: {target}'
        if not destination.exists():
            problems.append(f'{where} (no such file)')
        elif anchor and destination.suffix == '.md':
            if destination not in cache:
                cache[destination] = anchors(destination)
            if anchor not in cache[destination]:
                problems.append(f'{where} (no heading or anchor {anchor!r} in {destination.name})')
    return problems


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_an_existing_file_and_heading(page):
    assert page.exists(), f'{page} is missing'
    problems = broken_links(page)
    assert not problems, 'broken links:\n' + '\n'.join(problems)


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / 'other.md').write_text('# Running on a cluster\n\n## Slurm: `--signal` (TERM)\n', encoding='utf-8')
    page = tmp_path / 'page.md'
    page.write_text('\n'.join([
        '# Page', '', '[ok](other.md#running-on-a-cluster) [ok too](other.md#slurm---signal-term) [self](#page)',
        '[gone](missing.md) [wrong](other.md#kubernetes) `[in code](nowhere.md)` [web](https://example.org/x)',
        '```', '[in a fence](nowhere.md)', '```', '[ref]: other.md#no-such-heading', '']), encoding='utf-8')
    problems = broken_links(page, root=tmp_path)
    assert len(problems) == 3, problems
    assert 'missing.md (no such file)' in problems[0]
    assert "'kubernetes'" in problems[1] and "'no-such-heading'" in problems[2]


@pytest.mark.parametrize('heading, expected', [
    ('Quick start: two commands on a fresh machine', 'quick-start-two-commands-on-a-fresh-machine'),
    ('ComfyUI, chaiNNer, AUTOMATIC1111 / Forge (spandrel)', 'comfyui-chainner-automatic1111--forge-spandrel'),
    ("GFP-GAN's degradation and `DegradedFaceDataset`", 'gfp-gans-degradation-and-degradedfacedataset'),
    ('Generated pairs: `dlst-generate-pairs` (paper 3.2.4)', 'generated-pairs-dlst-generate-pairs-paper-324'),
    ('See [the guide](x.md) now', 'see-the-guide-now'),
])
def test_anchors_are_made_as_github_makes_them(heading, expected):
    assert slug(heading) == expected


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / 'p.md'
    page.write_text('# A\n## Notes\n## Notes\n## Notes\n', encoding='utf-8')
    assert anchors(page) == {'a', 'notes', 'notes-1', 'notes-2'}


def fenced_commands(text):
    """Command lines inside the fenced code blocks of a Markdown text, trailing comments removed."""
    inside, commands = False, []
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
        elif inside and line.strip() and not line.lstrip().startswith('#'):
            commands.append(re.split(r'\s+#\s', line, maxsplit=1)[0].strip())
    return commands


def test_the_readme_test_command_is_the_one_ci_runs():
    readme = fenced_commands((ROOT / 'README.md').read_text(encoding='utf-8'))
    first = next((c for c in readme if 'pytest' in c), None)
    ci_lines = [ln.strip() for ln in (ROOT / '.ci' / 'run').read_text(encoding='utf-8').splitlines()]
    ci = [ln for ln in ci_lines if 'pytest' in ln and not ln.startswith('#')]
    assert first is not None, 'README.md has no test command in a code block'
    assert len(ci) == 1, f'.ci/run should run one test command, found {ci}'
    assert first == ci[0], f'README.md says {first!r}, .ci/run runs {ci[0]!r}'


def test_the_readme_quick_start_keeps_both_set_up_commands():
    commands = fenced_commands((ROOT / 'README.md').read_text(encoding='utf-8'))
    assert commands[:2] == ['bash scripts/install.sh && dlst-demo --out demo_out',
                            'bash scripts/install.sh && python -m pytest -q'], commands[:2]
