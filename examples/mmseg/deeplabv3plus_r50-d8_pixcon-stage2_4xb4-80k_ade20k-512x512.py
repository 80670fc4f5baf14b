# Stage 2 of Zhao et al. (ICCV 2021): mmseg's DeepLabV3+, unchanged, fine-tuned with
# cross-entropy from the stage-1 contrastive checkpoint. The projection head of stage 1 is
# dropped (its weights are reported as unexpected keys), the classifier conv_seg starts from
# stage 1's (untrained) initialisation and the auxiliary FCN head from its own (missing keys).
# mmseg's config is found in the installed mmseg package (under mmseg/.mim/configs, where
# mmengine's `mmseg::` scope looks too): that scope finds the package by its distribution name,
# mmsegmentation, and so misses the maintained fork onedl-mmsegmentation.
_base_ = [__import__('mmseg').__path__[0]
          + '/.mim/configs/deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py']

# The last checkpoint of stage 1 as mmseg's tools/train.py names it (work_dirs/<config>/);
# override with --cfg-options load_from=... when it lives elsewhere. With torch >= 2.6, run
# with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1: mmengine 0.10.7's torch.load would otherwise refuse
# the message hub that mmengine saves in its own checkpoints.
load_from = 'work_dirs/deeplabv3plus_r50-d8_pixcon-stage1_4xb4-80k_ade20k-512x512/iter_80000.pth'
