"""Expert colour names: the ISCC-NBS centroid colours, mapped onto mltk's names.

The ISCC-NBS System of Color Designation (Inter-Society Color Council and National Bureau of
Standards; Kelly and Judd, *Color: Universal Language and Dictionary of Names*, NBS Special
Publication 440, 1976) divides the Munsell solid into 267 blocks, each named by experts as a hue
("yellow", "reddish orange", "purplish blue") with tone modifiers ("vivid", "deep", "pale",
"grayish", ...). :data:`CENTROIDS` holds the sRGB colour of each block's centroid as shipped by
Debian's ``libcolor-library-perl`` 0.021 (``Color/Library/Dictionary/NBS_ISCC.pm``), copied here
so that nothing is installed or downloaded at run time. Nobody tuned mltk to it before it was
split: the palette was calibrated on its ``calibration`` half only (:func:`iscc_nbs_colors`).

The mapping onto mltk's names (:func:`expert_term`) is a judgment made from the names alone:

* The base term is the hue's last word: pink, red, orange, yellow, brown, green, blue, purple,
  white, gray, black; "violet" is purple (with blue as a neighbour). "olive" alone is not in
  mltk's vocabulary and is left out, as the XKCD mapping leaves it out ("olive green" is green).
* Neighbouring terms: the other hue words of the name ("reddish orange": red; "yellow green":
  yellow; "olive brown": green), gray for "grayish" and for "pale" and "very pale" (which the
  system defines as light grayish and very light grayish), black for "blackish", and navy for
  blue (:func:`~mltk.colors.naming.accepted_terms`).
* The system has no beige: beige is a neighbour of the pale and grayish tones of orange, orange
  yellow, yellow, yellowish brown and brown, of light yellowish brown and light brown (tan), and
  of yellowish white and yellowish gray. It is never the base term, so exact agreement counts
  every beige answer as a miss.
"""

from __future__ import annotations

#: (name, "#rrggbb") of the 267 ISCC-NBS centroids, in the order of the source file.
CENTROIDS: tuple[tuple[str, str], ...] = (
    ("black", "#222222"), ("blackish blue", "#202830"), ("blackish green", "#1a2421"),
    ("blackish purple", "#291e29"), ("blackish red", "#2e1d21"), ("bluish black", "#202428"),
    ("bluish gray", "#81878b"), ("bluish white", "#e9e9ed"), ("brilliant blue", "#4997d0"),
    ("brilliant bluish green", "#00a693"), ("brilliant green", "#3eb489"),
    ("brilliant greenish blue", "#239eba"), ("brilliant greenish yellow", "#e9e450"),
    ("brilliant orange", "#fd943f"), ("brilliant orange yellow", "#ffc14f"),
    ("brilliant purple", "#d399e6"), ("brilliant purplish blue", "#6c79b8"),
    ("brilliant purplish pink", "#ffc8d6"), ("brilliant violet", "#7e73b8"),
    ("brilliant yellow", "#fada5e"), ("brilliant yellow green", "#bdda57"),
    ("brilliant yellowish green", "#83d37d"), ("brownish black", "#28201c"),
    ("brownish gray", "#5b504f"), ("brownish orange", "#ae6938"), ("brownish pink", "#c2ac99"),
    ("dark blue", "#00304e"), ("dark bluish gray", "#51585e"), ("dark bluish green", "#004b49"),
    ("dark brown", "#422518"), ("dark gray", "#555555"), ("dark grayish blue", "#36454f"),
    ("dark grayish brown", "#3e322c"), ("dark grayish green", "#3a4b47"),
    ("dark grayish olive", "#363527"), ("dark grayish olive green", "#31362b"),
    ("dark grayish purple", "#50404d"), ("dark grayish red", "#543d3f"),
    ("dark grayish reddish brown", "#43302e"), ("dark grayish yellow", "#a18f60"),
    ("dark grayish yellowish brown", "#483c32"), ("dark green", "#1b4d3e"),
    ("dark greenish blue", "#004958"), ("dark greenish gray", "#4e5755"),
    ("dark greenish yellow", "#98943e"), ("dark olive", "#403d21"),
    ("dark olive brown", "#3b3121"), ("dark olive green", "#2b3d26"),
    ("dark orange yellow", "#be8a3d"), ("dark pink", "#c08081"), ("dark purple", "#563c5c"),
    ("dark purplish blue", "#252440"), ("dark purplish gray", "#5d555b"),
    ("dark purplish pink", "#c17e91"), ("dark purplish red", "#673147"), ("dark red", "#722f37"),
    ("dark reddish brown", "#3e1d1e"), ("dark reddish gray", "#5c504f"),
    ("dark reddish orange", "#9e4732"), ("dark reddish purple", "#5d3954"),
    ("dark violet", "#2f2140"), ("dark yellow", "#ab9144"), ("dark yellowish brown", "#4b3621"),
    ("dark yellowish green", "#355e3b"), ("dark yellowish pink", "#c48379"),
    ("deep blue", "#00416a"), ("deep bluish green", "#00443f"), ("deep brown", "#593319"),
    ("deep green", "#00543d"), ("deep greenish blue", "#2e8495"),
    ("deep greenish yellow", "#9b9400"), ("deep olive green", "#232f00"),
    ("deep orange", "#be6516"), ("deep orange yellow", "#c98500"), ("deep pink", "#e4717a"),
    ("deep purple", "#602f6b"), ("deep purplish blue", "#272458"),
    ("deep purplish pink", "#de6fa1"), ("deep purplish red", "#78184a"), ("deep red", "#841b2d"),
    ("deep reddish brown", "#56070c"), ("deep reddish orange", "#aa381e"),
    ("deep reddish purple", "#702963"), ("deep violet", "#32174d"), ("deep yellow", "#af8d13"),
    ("deep yellow green", "#467129"), ("deep yellowish brown", "#654522"),
    ("deep yellowish green", "#00622d"), ("deep yellowish pink", "#e66721"),
    ("grayish blue", "#536878"), ("grayish brown", "#635147"), ("grayish green", "#5e716a"),
    ("grayish greenish yellow", "#b9b57d"), ("grayish olive", "#5b5842"),
    ("grayish olive green", "#515744"), ("grayish pink", "#c4aead"),
    ("grayish purple", "#796878"), ("grayish purplish blue", "#4c516d"),
    ("grayish purplish pink", "#c3a6b1"), ("grayish purplish red", "#915f6d"),
    ("grayish red", "#905d5d"), ("grayish reddish brown", "#674c47"),
    ("grayish reddish orange", "#b4745e"), ("grayish reddish purple", "#836479"),
    ("grayish violet", "#554c69"), ("grayish yellow", "#c2b280"),
    ("grayish yellow green", "#8f9779"), ("grayish yellowish brown", "#7e6d5a"),
    ("grayish yellowish pink", "#c7ada3"), ("greenish black", "#1e2321"),
    ("greenish gray", "#7d8984"), ("greenish white", "#dfede8"), ("light blue", "#70a3cc"),
    ("light bluish gray", "#b4bcc0"), ("light bluish green", "#66ada4"),
    ("light brown", "#a67b5b"), ("light brownish gray", "#8e8279"), ("light gray", "#b9b8b5"),
    ("light grayish brown", "#958070"), ("light grayish olive", "#8c8767"),
    ("light grayish purplish red", "#af868e"), ("light grayish red", "#ad8884"),
    ("light grayish reddish brown", "#977f73"), ("light grayish yellowish brown", "#ae9b82"),
    ("light green", "#6aab8e"), ("light greenish blue", "#66aabc"),
    ("light greenish gray", "#b2beb5"), ("light greenish yellow", "#eae679"),
    ("light olive", "#867e36"), ("light olive brown", "#967117"), ("light olive gray", "#8a8776"),
    ("light orange", "#fab57f"), ("light orange yellow", "#fbc97f"), ("light pink", "#f9ccca"),
    ("light purple", "#b695c0"), ("light purplish blue", "#8791bf"),
    ("light purplish gray", "#bfb9bd"), ("light purplish pink", "#efbbcc"),
    ("light reddish brown", "#a87c6d"), ("light reddish purple", "#b784a7"),
    ("light violet", "#8c82b6"), ("light yellow", "#f8de7e"), ("light yellow green", "#c9dc89"),
    ("light yellowish brown", "#c19a6b"), ("light yellowish green", "#93c592"),
    ("light yellowish pink", "#f4c2c2"), ("medium gray", "#848482"), ("moderate blue", "#436b95"),
    ("moderate bluish green", "#317873"), ("moderate brown", "#6f4e37"),
    ("moderate green", "#3b7861"), ("moderate greenish blue", "#367588"),
    ("moderate greenish yellow", "#b9b459"), ("moderate olive", "#665d1e"),
    ("moderate olive brown", "#6c541e"), ("moderate olive green", "#4a5d23"),
    ("moderate orange", "#d99058"), ("moderate orange yellow", "#e3a857"),
    ("moderate pink", "#dea5a4"), ("moderate purple", "#86608e"),
    ("moderate purplish blue", "#4e5180"), ("moderate purplish pink", "#d597ae"),
    ("moderate purplish red", "#a8516e"), ("moderate red", "#ab4e52"),
    ("moderate reddish brown", "#79443b"), ("moderate reddish orange", "#cb6d51"),
    ("moderate reddish purple", "#915c83"), ("moderate violet", "#604e81"),
    ("moderate yellow", "#c9ae5d"), ("moderate yellow green", "#8a9a5b"),
    ("moderate yellowish brown", "#826644"), ("moderate yellowish green", "#679267"),
    ("moderate yellowish pink", "#d9a6a9"), ("olive black", "#25241d"), ("olive gray", "#57554c"),
    ("pale blue", "#91a3b0"), ("pale green", "#8da399"), ("pale greenish yellow", "#ebe8a4"),
    ("pale orange yellow", "#fad6a5"), ("pale pink", "#ead8d7"), ("pale purple", "#aa98a9"),
    ("pale purplish blue", "#8c92ac"), ("pale purplish pink", "#e8ccd7"),
    ("pale reddish purple", "#aa8a9e"), ("pale violet", "#9690ab"), ("pale yellow", "#f3e5ab"),
    ("pale yellow green", "#dadfb7"), ("pale yellowish pink", "#ecd5c5"),
    ("pinkish gray", "#c1b6b3"), ("pinkish white", "#eae3e1"), ("purplish black", "#242124"),
    ("purplish gray", "#8b8589"), ("purplish white", "#e8e3e5"), ("reddish black", "#282022"),
    ("reddish gray", "#8f817f"), ("strong blue", "#0067a5"), ("strong bluish green", "#007a74"),
    ("strong brown", "#80461b"), ("strong green", "#007959"), ("strong greenish blue", "#007791"),
    ("strong greenish yellow", "#beb72e"), ("strong olive green", "#404f00"),
    ("strong orange", "#ed872d"), ("strong orange yellow", "#eaa221"), ("strong pink", "#ea9399"),
    ("strong purple", "#875692"), ("strong purplish blue", "#545aa7"),
    ("strong purplish pink", "#e68fac"), ("strong purplish red", "#b3446c"),
    ("strong red", "#bc3f4a"), ("strong reddish brown", "#882d17"),
    ("strong reddish orange", "#d9603b"), ("strong reddish purple", "#9e4f88"),
    ("strong violet", "#604e97"), ("strong yellow", "#d4af37"),
    ("strong yellow green", "#7e9f2e"), ("strong yellowish brown", "#996515"),
    ("strong yellowish green", "#44944a"), ("strong yellowish pink", "#f99379"),
    ("very dark bluish green", "#002a29"), ("very dark green", "#1c352d"),
    ("very dark greenish blue", "#002e3b"), ("very dark purple", "#301934"),
    ("very dark purplish red", "#38152c"), ("very dark red", "#3f1728"),
    ("very dark reddish purple", "#341731"), ("very dark yellowish green", "#173620"),
    ("very deep purple", "#401a4c"), ("very deep purplish red", "#54133b"),
    ("very deep red", "#5c0923"), ("very deep reddish purple", "#54194e"),
    ("very deep yellowish green", "#003118"), ("very light blue", "#a1caf1"),
    ("very light bluish green", "#96ded1"), ("very light green", "#8ed1b2"),
    ("very light greenish blue", "#9cd1dc"), ("very light purple", "#d5badb"),
    ("very light purplish blue", "#b3bce2"), ("very light violet", "#dcd0ff"),
    ("very light yellowish green", "#b6e5af"), ("very pale blue", "#bcd4e6"),
    ("very pale green", "#c7e6d7"), ("very pale purple", "#d6cadd"),
    ("very pale purplish blue", "#c0c8e1"), ("very pale violet", "#c4c3dd"),
    ("vivid blue", "#00a1c2"), ("vivid bluish green", "#008882"), ("vivid green", "#008856"),
    ("vivid greenish blue", "#0085a1"), ("vivid greenish yellow", "#dcd300"),
    ("vivid orange", "#f38400"), ("vivid orange yellow", "#f6a600"), ("vivid pink", "#ffb5ba"),
    ("vivid purple", "#9a4eae"), ("vivid purplish blue", "#30267a"),
    ("vivid purplish red", "#ce4676"), ("vivid red", "#be0032"),
    ("vivid reddish orange", "#e25822"), ("vivid reddish purple", "#870074"),
    ("vivid violet", "#9065ca"), ("vivid yellow", "#f3c300"), ("vivid yellow green", "#8db600"),
    ("vivid yellowish green", "#27a64c"), ("vivid yellowish pink", "#ffb7a5"),
    ("white", "#f2f3f4"), ("yellowish gray", "#bfb8a5"), ("yellowish white", "#f0ead6"),
)

#: Last word of the hue -> mltk name.
HUE_TERMS = {"pink": "pink", "red": "red", "orange": "orange", "yellow": "yellow",
             "brown": "brown", "green": "green", "blue": "blue", "purple": "purple",
             "violet": "purple", "white": "white", "gray": "gray", "black": "black"}
#: Other hue words of a name -> the neighbouring mltk name they make acceptable.
HUE_MODIFIERS = {"reddish": "red", "red": "red", "pinkish": "pink", "orange": "orange",
                 "brownish": "brown", "yellowish": "yellow", "yellow": "yellow",
                 "greenish": "green", "olive": "green", "bluish": "blue", "purplish": "purple",
                 "blackish": "black"}
#: Tone modifiers; those in GRAYISH make gray a neighbour.
TONES = {"very", "vivid", "brilliant", "strong", "deep", "light", "moderate", "medium", "dark",
         "pale", "grayish"}
GRAYISH = {"grayish", "pale"}
#: Hues whose pale and grayish tones may be called beige, and the light ones too (tan).
BEIGE_WHEN_WEAK = {"orange", "orange yellow", "yellow", "yellowish brown", "brown"}
BEIGE_WHEN_LIGHT = {"yellowish brown", "brown"}
BEIGE_ALWAYS = {"yellowish white", "yellowish gray"}
