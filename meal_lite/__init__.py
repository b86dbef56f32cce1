"""meal-lite: MEAL V2 ensemble knowledge distillation, small enough to read and real enough to use.

The modules, one concept each (and one book chapter each):

- :mod:`meal_lite.data` -- datasets (digits offline, ImageNette, ImageNet) and their transforms;
- :mod:`meal_lite.models` -- students and teachers created by timm name, local weights, class subsets;
- :mod:`meal_lite.ensemble` -- frozen teachers whose averaged probabilities are the target;
- :mod:`meal_lite.losses` -- soft cross-entropy / KL distillation losses;
- :mod:`meal_lite.discriminator` -- the three-layer discriminator on final outputs;
- :mod:`meal_lite.trainer` -- training, evaluation, checkpoints and resume;
- :mod:`meal_lite.config` and :mod:`meal_lite.profiles` -- configuration and the offline switch.
"""

__version__ = "0.1.0"
